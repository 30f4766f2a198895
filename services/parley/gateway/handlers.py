"""What each client request does (DESIGN §5), on top of routing and fan-out."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import grpc

from parley._generated import room_service_pb2 as pb
from parley.cluster.discovery import Discovery
from parley.cluster.health import HealthMonitor
from parley.gateway.fanout import Fanout
from parley.gateway.joiner import Joiner
from parley.gateway.latency import DeliveryClock
from parley.gateway.publisher import Publisher
from parley.gateway.room_client import RoomClient
from parley.gateway.router import ATTEMPT_TIMEOUT, Router
from parley.gateway.session import Session
from parley.observability import tracing
from parley.observability.log import get_logger
from parley.protocol import (
    AnnotateRequest,
    CreateRequest,
    DeleteRequest,
    HistoryRequest,
    JoinRequest,
    LeaveRequest,
    MembersRequest,
    PingRequest,
    Request,
    RoomsRequest,
    SendRequest,
    frames,
)
from parley.protocol.errors import ErrorCode, ProtocolError

log = get_logger(__name__)

ANNOTATION_KINDS = {
    "edit": pb.ENTRY_KIND_EDIT,
    "unsend": pb.ENTRY_KIND_UNSEND,
    "react": pb.ENTRY_KIND_REACT,
    "unreact": pb.ENTRY_KIND_UNREACT,
}
"""The log entry each annotating request appends."""

JOIN_BACKLOG = 50
"""Entries a join without `since` is sent before the live ones."""


class Handlers:
    """Serves every request type; one instance per gateway, shared by all sessions."""

    def __init__(
        self,
        discovery: Discovery,
        health: HealthMonitor,
        router: Router,
        publisher: Publisher,
        joiner: Joiner,
        fanout: Fanout,
        clock: DeliveryClock,
    ) -> None:
        self._discovery = discovery
        self._health = health
        self._router = router
        self._room_service = RoomClient(router)
        self._publisher = publisher
        self._joiner = joiner
        self._fanout = fanout
        self._clock = clock
        self._table: dict[type[Any], Any] = {
            RoomsRequest: self._rooms,
            CreateRequest: self._create,
            JoinRequest: self._join,
            SendRequest: self._send,
            AnnotateRequest: self._annotate,
            HistoryRequest: self._history,
            MembersRequest: self._members,
            LeaveRequest: self._leave,
            DeleteRequest: self._delete,
            PingRequest: self._ping,
        }

    async def handle(self, session: Session, request: Request) -> None:
        """Serve one request; errors are raised for the session's error boundary.

        Raises:
            ProtocolError: the error frame to answer with.
        """
        await self._table[type(request)](session, request)

    def disconnected(self, session: Session) -> None:
        """The connection closed: detach it from its rooms (offline, not leaving)."""
        for room in session.rooms:
            self._fanout.detach(session, room)
        session.rooms.clear()

    async def _ping(self, session: Session, request: PingRequest) -> None:
        session.reply(frames.pong(request.id))

    async def _rooms(self, session: Session, request: RoomsRequest) -> None:
        # every member is asked: a node this gateway's health watch has not
        # seen up yet (just started, say) may administer rooms all the same;
        # those not seen up get a short deadline, so a dead one costs little
        nodes = list(self._discovery.members())
        answers = await asyncio.gather(
            *(
                self._list_rooms(node, ATTEMPT_TIMEOUT if self._health.is_up(node) else 1.0)
                for node in nodes
            ),
            return_exceptions=True,
        )
        found: dict[str, pb.RoomInfo] = {}
        failures = 0
        for answer in answers:
            if isinstance(answer, BaseException):
                failures += 1
                continue
            for info in answer.rooms:
                # Two nodes may both list a room while its administrator changes;
                # the one further along is the newer view.
                seen = found.get(info.room)
                if seen is None or info.last_seq > seen.last_seq:
                    found[info.room] = info
        if nodes and failures == len(nodes):
            raise ProtocolError(ErrorCode.UNAVAILABLE, "no node answered; try again")
        items = (
            frames.room_info(
                i.room, i.owner, i.member_count, i.last_seq, i.administrator, i.last_ts_ms
            )
            for _, i in sorted(found.items())
        )
        session.reply(frames.rooms(items, request.id))

    async def _list_rooms(self, node: str, timeout: float) -> pb.ListRoomsResponse:
        try:
            return await self._room_service.list_rooms(node, timeout)
        except grpc.aio.AioRpcError as error:
            log.info("ListRooms failed", node=node, code=error.code().name)
            raise

    async def _create(self, session: Session, request: CreateRequest) -> None:
        response = await self._room_service.create_room(
            request.room, session.user, request.retain_messages, request.retain_seconds
        )
        session.reply(frames.created(request.room, response.owner or session.user, request.id))

    async def _join(self, session: Session, request: JoinRequest) -> None:
        room = request.room
        response = await self._joiner.join(room, session.user)
        last_seq = response.last_seq
        if request.since is None:
            start = max(1, last_seq - JOIN_BACKLOG + 1)
        else:
            # A since beyond the room's end cannot hide entries still to come.
            start = min(request.since, last_seq) + 1
        # a since older than retention keeps: say so, so the client resyncs
        # rather than silently missing entries
        truncated = request.since is not None and response.first_seq > request.since + 1
        first_seq = response.first_seq if truncated else None
        session.reply(frames.joined(room, last_seq, response.members, request.id, first_seq))
        session.rooms.add(room)
        try:
            await self._fanout.attach(session, room, start)
        except BaseException:
            session.rooms.discard(room)
            raise
        if session.closed:
            self._fanout.detach(session, room)

    async def _send(self, session: Session, request: SendRequest) -> None:
        received = time.perf_counter()
        # Without a client id the gateway makes one, so its own retries stay idempotent.
        msg_id = request.id if request.id else f"gw-{uuid.uuid4().hex}"
        with tracing.span("gateway.publish", room=request.room):
            result = await self._publisher.publish(request.room, session.user, msg_id, request.text)
        session.reply(frames.ack(request.room, result.seq, request.id))
        if self._fanout.feed(request.room) is not None:
            fanned_out = self._fanout.fanned_out(request.room, result.seq)
            self._clock.acked(request.room, result.seq, received, fanned_out)

    async def _annotate(self, session: Session, request: AnnotateRequest) -> None:
        msg_id = request.id if request.id else f"gw-{uuid.uuid4().hex}"
        result = await self._publisher.publish(
            request.room,
            session.user,
            msg_id,
            request.text,
            kind=ANNOTATION_KINDS[request.action],
            target=request.target,
        )
        session.reply(frames.ack(request.room, result.seq, request.id))

    async def _history(self, session: Session, request: HistoryRequest) -> None:
        # before 0 asks for nothing; the node reads 0 as "newest", so ask before 1.
        before = 0 if request.before is None else max(request.before, 1)
        response = await self._room_service.history(
            request.room, session.user, before, request.limit
        )
        session.reply(frames.history(request.room, response.entries, request.id))

    async def _members(self, session: Session, request: MembersRequest) -> None:
        response = await self._room_service.members(request.room)
        items = ((m.user, m.online) for m in response.members)
        session.reply(frames.members(request.room, items, request.id))

    async def _leave(self, session: Session, request: LeaveRequest) -> None:
        room = request.room
        response = await self._room_service.leave_room(room, session.user)
        # The user is no longer a member: none of their sockets here keeps the
        # room, each after receiving the leave entry itself.
        for member in self._fanout.members_of(room, session.user):
            self._fanout.detach_after(member, room, response.seq)
        session.reply(frames.left(room, request.id))

    async def _delete(self, session: Session, request: DeleteRequest) -> None:
        room = request.room
        # If the fan-out delivers the delete entry before the node's reply, it
        # answers this connection with the request's id (Session.room_deleted).
        session.deleting[room] = request.id
        try:
            await self._room_service.delete_room(room, session.user)
        except BaseException:
            session.deleting.pop(room, None)
            raise
        if room not in session.deleting:
            return  # the fan-out has answered already
        del session.deleting[room]
        # The other members hear it from their feeds.
        self._fanout.detach(session, room)
        session.rooms.discard(room)
        session.reply(frames.deleted(room, request.id))
