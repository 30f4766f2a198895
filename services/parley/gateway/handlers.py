"""What each client request does (DESIGN §5), on top of routing and fan-out."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from typing import Any

import grpc

from parley._generated import room_service_pb2 as pb
from parley.cluster.discovery import Discovery
from parley.cluster.health import HealthMonitor
from parley.gateway.errors import classify
from parley.gateway.fanout import Fanout
from parley.gateway.joiner import Joiner
from parley.gateway.latency import DeliveryClock
from parley.gateway.notices import UserSessions
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
    DmRequest,
    HistoryRequest,
    InviteRequest,
    JoinRequest,
    LeaveRequest,
    MembersRequest,
    PingRequest,
    ReadRequest,
    Request,
    RoomsRequest,
    SendRequest,
    TypingRequest,
    frames,
)
from parley.protocol.errors import ErrorCode, ProtocolError
from parley.protocol.requests import dm_room

log = get_logger(__name__)

ACTION_KINDS = {
    "edit": pb.ENTRY_KIND_EDIT,
    "unsend": pb.ENTRY_KIND_UNSEND,
    "react": pb.ENTRY_KIND_REACT,
    "unreact": pb.ENTRY_KIND_UNREACT,
}
"""The log entry each annotating request appends."""

TYPING_EVERY = 2.0
"""Seconds between the typing frames passed on for one user in one room."""


class TypingLimit:
    """At most one typing signal per user and room every TYPING_EVERY seconds
    (clients send one per keystroke; the others need one every few seconds)."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], float] = {}

    def allow(self, user: str, room: str) -> bool:
        now = time.monotonic()
        key = (user, room)
        if now - self._last.get(key, -TYPING_EVERY) < TYPING_EVERY:
            return False
        if len(self._last) > 100_000:  # (forget stale pairs now and then)
            self._last = {k: t for k, t in self._last.items() if now - t < TYPING_EVERY}
        self._last[key] = now
        return True


def _finish(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _message_id(request: SendRequest) -> str:
    """The send's id, or one the gateway makes (so its own retries stay idempotent)."""
    return request.id if request.id else f"gw-{uuid.uuid4().hex}"


def _other(dm: Sequence[str], user: str) -> str | None:
    """The other user of a direct-message room (None: not one)."""
    if not dm:
        return None
    return next((u for u in dm if u != user), user)


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
        sessions: UserSessions,
        *,
        max_rooms: int = 1000,
    ) -> None:
        self._max_rooms = max_rooms
        self._discovery = discovery
        self._health = health
        self._router = router
        self._room_service = RoomClient(router)
        self._publisher = publisher
        self._joiner = joiner
        self._typing_limit = TypingLimit()
        self._fanout = fanout
        self._clock = clock
        self._sessions = sessions
        self._table: dict[type[Any], Any] = {
            RoomsRequest: self._rooms,
            CreateRequest: self._create,
            JoinRequest: self._join,
            SendRequest: self._send,
            AnnotateRequest: self._annotate,
            InviteRequest: self._invite,
            DmRequest: self._dm,
            TypingRequest: self._typing,
            ReadRequest: self._read,
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
                self._list_rooms(
                    node, ATTEMPT_TIMEOUT if self._health.is_up(node) else 1.0, session.user
                )
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
                i.room, i.owner, i.member_count, i.last_seq, i.administrator, i.last_ts_ms,
                private=i.private,
                dm_with=_other(i.dm, session.user),
                unread=i.unread if i.member else None,
            )
            for _, i in sorted(found.items())
        )  # fmt: skip
        session.reply(frames.rooms(items, request.id))

    async def _list_rooms(self, node: str, timeout: float, user: str) -> pb.ListRoomsResponse:
        try:
            return await self._room_service.list_rooms(node, timeout, user)
        except grpc.aio.AioRpcError as error:
            log.info("ListRooms failed", node=node, code=error.code().name)
            raise

    async def _create(self, session: Session, request: CreateRequest) -> None:
        response = await self._room_service.create_room(
            request.room,
            session.user,
            request.retain_messages,
            request.retain_seconds,
            private=request.private,
        )
        session.reply(frames.created(request.room, response.owner or session.user, request.id))

    def _check_room_limit(self, session: Session, room: str, rid: str | None) -> None:
        if room not in session.rooms and len(session.rooms) >= self._max_rooms:
            raise ProtocolError(
                ErrorCode.LIMIT_EXCEEDED,
                f"a connection may join at most {self._max_rooms} rooms; leave one first",
                rid,
            )

    async def _join(self, session: Session, request: JoinRequest) -> None:
        self._check_room_limit(session, request.room, request.id)
        response = await self._joiner.join(request.room, session.user)
        await self._joined(session, request, response)

    async def _dm(self, session: Session, request: DmRequest) -> None:
        """Join the caller's direct-message room with the user, creating it
        the first time (both are members from the start)."""
        user, other = session.user, request.user
        if other == user:
            raise ProtocolError(ErrorCode.BAD_REQUEST, "a direct message needs another user")
        room = dm_room(user, other)
        self._check_room_limit(session, room, request.id)
        try:
            response = await self._joiner.join(room, user)
        except ProtocolError as error:
            if error.code != ErrorCode.NOT_FOUND:
                raise
            try:
                await self._room_service.create_room(room, user, dm=(user, other))
            except ProtocolError as exists:
                if exists.code != ErrorCode.ROOM_EXISTS:  # (the other user was first)
                    raise
            response = await self._joiner.join(room, user)
        await self._joined(session, JoinRequest(room=room, id=request.id), response)

    async def _joined(
        self, session: Session, request: JoinRequest, response: pb.JoinRoomResponse
    ) -> None:
        room = request.room
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
        session.reply(
            frames.joined(
                room, last_seq, response.members, request.id, first_seq,
                unread=response.unread,
                dm_with=_other(response.dm, session.user),
            )
        )  # fmt: skip
        session.rooms.add(room)
        try:
            await self._fanout.attach(session, room, start)
        except BaseException:
            session.rooms.discard(room)
            raise
        if session.closed:
            self._fanout.detach(session, room)

    def start_send(self, session: Session, request: SendRequest) -> asyncio.Future[None]:
        """Begin a send; the future is done once the client is answered.

        The fast path: with the room's administrator known (and tracing
        off), the message goes straight into that node's next batch and the
        batch's answer writes the ack, without a task, a route or the
        router's retry loop per send (a pipelining client's sends are most
        of a gateway's work). Anything but a clean answer — a redirect, a
        node down, a failed batch — goes the full way (`_publish`, retried
        by the router) with the same message id, so a retry stays
        idempotent; a refusal (not_member, ...) is the answer.
        """
        loop = asyncio.get_running_loop()
        node = self._router.known_administrator(request.room)
        if node is None or tracing.enabled():
            return loop.create_task(session.guard(request, self._send(session, request)))
        received = time.perf_counter()
        msg_id = _message_id(request)
        answered: asyncio.Future[None] = loop.create_future()
        batched = self._publisher.submit(node, request.room, session.user, msg_id, request.text)

        def on_result(future: asyncio.Future[pb.PublishResult]) -> None:
            if answered.done():  # (the connection closed meanwhile)
                return
            try:
                answer(future)
            except Exception:
                # (as the session's error boundary would: the client hears,
                # and the reader, which waits on this send, goes on)
                log.exception("send failed", user=session.user)
                session.reply(frames.error(ErrorCode.INTERNAL, "internal error", request.id))
                _finish(answered)

        def answer(future: asyncio.Future[pb.PublishResult]) -> None:
            result = None if future.cancelled() or future.exception() else future.result()
            if result is not None and not result.error_code:
                self._acked(session, request, result, received)
                answered.set_result(None)
                return
            if result is not None:
                error = classify(result.error_code, result.error_message, result.administrator)
                if isinstance(error, ProtocolError):
                    session.reply(frames.error(error.code, error.message, request.id))
                    answered.set_result(None)
                    return
            self._router.forget(request.room, node)
            work = self._publish(session, request, msg_id, received)
            retry = loop.create_task(session.guard(request, work))
            retry.add_done_callback(lambda _: _finish(answered))
            answered.add_done_callback(lambda _: retry.cancel())

        batched.add_done_callback(on_result)
        return answered

    async def _send(self, session: Session, request: SendRequest) -> None:
        await self._publish(session, request, _message_id(request), time.perf_counter())

    async def _publish(
        self, session: Session, request: SendRequest, msg_id: str, received: float
    ) -> None:
        with tracing.span("gateway.publish", room=request.room):
            result = await self._publisher.publish(request.room, session.user, msg_id, request.text)
        self._acked(session, request, result, received)

    def _acked(
        self, session: Session, request: SendRequest, result: pb.PublishResult, received: float
    ) -> None:
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
            kind=ACTION_KINDS[request.action],
            target=request.target,
        )
        session.reply(frames.ack(request.room, result.seq, request.id))

    async def _invite(self, session: Session, request: InviteRequest) -> None:
        # (the invitee's connections hear of it from the node: Notifications)
        await self._room_service.invite(request.room, session.user, request.user)
        session.reply(frames.invited(request.room, request.user, request.id))

    async def _typing(self, session: Session, request: TypingRequest) -> None:
        if not self._typing_limit.allow(session.user, request.room):
            return
        try:
            await self._room_service.typing(request.room, session.user)
        except ProtocolError as error:
            if error.code == ErrorCode.UNAVAILABLE:
                return  # (late typing is worthless; never worth an error)
            raise

    async def _read(self, session: Session, request: ReadRequest) -> None:
        # (the user's other connections hear of it from the node: Notifications)
        origin = self._sessions.origin(session)
        result = await self._publisher.publish(
            request.room, session.user, origin, "", kind=pb.ENTRY_KIND_READ, target=request.seq
        )
        session.reply(frames.read(request.room, result.seq, request.id))

    async def _history(self, session: Session, request: HistoryRequest) -> None:
        # before 0 asks for nothing; the node reads 0 as "newest", so ask before 1.
        before = 0 if request.before is None else max(request.before, 1)
        response = await self._room_service.history(
            request.room, session.user, before, request.limit
        )
        session.reply(frames.history(request.room, response.entries, request.id))

    async def _members(self, session: Session, request: MembersRequest) -> None:
        response = await self._room_service.members(request.room, session.user)
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
