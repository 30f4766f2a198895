"""An in-process RoomService double for gateway unit tests.

It administers every room it is asked about (or, with `redirect_to`, none:
it answers not_administrator naming that node), keeps rooms in memory and
follows the node API contract the gateway relies on: parley-code trailers,
idempotent publishes, Subscribe backlog then live batches, presence events.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from parley._generated import room_service_pb2 as pb
from parley._generated import room_service_pb2_grpc as pb_grpc
from parley.cluster.channels import SERVER_OPTIONS


class Refused(Exception):
    """A node error: a parley-code, a status and optionally an administrator hint."""

    def __init__(self, code: str, status: grpc.StatusCode, hint: str | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.status = status
        self.hint = hint


@dataclass
class FakeRoom:
    """One room's log and state."""

    owner: str
    entries: list[pb.Entry] = field(default_factory=list)
    members: set[str] = field(default_factory=set)
    sent: dict[tuple[str, str], int] = field(default_factory=dict)
    online: dict[str, set[str]] = field(default_factory=dict)
    feeds: list[asyncio.Queue[pb.SubscribeResponse | None]] = field(default_factory=list)

    def append(self, kind: int, user: str, text: str = "") -> pb.Entry:
        entry = pb.Entry(
            seq=len(self.entries), kind=kind, user=user, text=text, ts_ms=int(time.time() * 1000)
        )
        self.entries.append(entry)
        for feed in self.feeds:
            feed.put_nowait(pb.SubscribeResponse(entries=[entry]))
        return entry


class FakeRoomService(pb_grpc.RoomServiceServicer):
    """The double's servicer; tests inspect and steer it through attributes."""

    def __init__(self, node_id: str, redirect_to: str | None = None) -> None:
        self.node_id = node_id
        self.redirect_to = redirect_to
        self.rooms: dict[str, FakeRoom] = {}
        self.calls: list[str] = []
        self.batch_sizes: list[int] = []
        self.publish_ids: list[str] = []
        """The client_msg_id of every publish asked of this node, refused or not."""
        self.streams = True
        """False: PublishStream is UNIMPLEMENTED (a node of the previous release)."""
        self.join_batches: list[int] | None = []
        """Sizes of the JoinRooms calls; None: JoinRooms is UNIMPLEMENTED."""
        self.subscribes: list[pb.SubscribeRequest] = []
        self.presence_updates: list[pb.UpdatePresenceRequest] = []
        self.fail_next_subscribe_after: int | None = None
        """Set to N: the next Subscribe fails UNAVAILABLE after N entries."""

    def _room(self, name: str) -> FakeRoom:
        if self.redirect_to is not None:
            raise Refused(
                "not_administrator", grpc.StatusCode.FAILED_PRECONDITION, self.redirect_to
            )
        room = self.rooms.get(name)
        if room is None:
            raise Refused("not_found", grpc.StatusCode.NOT_FOUND)
        return room

    async def _run(self, context: grpc.aio.ServicerContext, fn: object, *args: object) -> object:
        try:
            return fn(*args)  # type: ignore[operator]
        except Refused as refused:
            trailers: tuple[tuple[str, str], ...] = (("parley-code", refused.code),)
            if refused.hint is not None:
                trailers += (("parley-administrator", refused.hint),)
            context.set_trailing_metadata(trailers)
            await context.abort(refused.status, refused.code)

    async def CreateRoom(self, request, context):
        self.calls.append("CreateRoom")

        def create() -> pb.CreateRoomResponse:
            if self.redirect_to is not None:
                self._room(request.room)
            if request.room in self.rooms:
                raise Refused("room_exists", grpc.StatusCode.ALREADY_EXISTS)
            room = self.rooms[request.room] = FakeRoom(owner=request.user)
            room.members.add(request.user)
            room.append(pb.ENTRY_KIND_CREATE, request.user)
            return pb.CreateRoomResponse(owner=request.user, seq=0)

        return await self._run(context, create)

    async def DeleteRoom(self, request, context):
        self.calls.append("DeleteRoom")

        def delete() -> pb.DeleteRoomResponse:
            room = self._room(request.room)
            if room.owner != request.user:
                raise Refused("forbidden", grpc.StatusCode.PERMISSION_DENIED)
            entry = room.append(pb.ENTRY_KIND_DELETE, request.user)
            for feed in room.feeds:
                feed.put_nowait(None)
            del self.rooms[request.room]
            return pb.DeleteRoomResponse(seq=entry.seq)

        return await self._run(context, delete)

    def _join(self, request: pb.JoinRoomRequest) -> pb.JoinRoomResponse:
        room = self._room(request.room)
        already = request.user in room.members
        if not already:
            room.members.add(request.user)
            room.append(pb.ENTRY_KIND_JOIN, request.user)
        return pb.JoinRoomResponse(
            last_seq=len(room.entries) - 1,
            members=sorted(room.members),
            already_member=already,
        )

    async def JoinRoom(self, request, context):
        self.calls.append("JoinRoom")
        return await self._run(context, self._join, request)

    async def JoinRooms(self, request, context):
        if self.join_batches is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not implemented!")
        self.calls.append("JoinRooms")
        self.join_batches.append(len(request.joins))
        results = []
        for join in request.joins:
            try:
                results.append(pb.JoinRoomResult(joined=self._join(join)))
            except Refused as refused:
                results.append(
                    pb.JoinRoomResult(error_code=refused.code, administrator=refused.hint or "")
                )
        return pb.JoinRoomsResponse(results=results)

    async def LeaveRoom(self, request, context):
        self.calls.append("LeaveRoom")

        def leave() -> pb.LeaveRoomResponse:
            room = self._room(request.room)
            if request.user not in room.members:
                raise Refused("not_member", grpc.StatusCode.FAILED_PRECONDITION)
            room.members.discard(request.user)
            return pb.LeaveRoomResponse(seq=room.append(pb.ENTRY_KIND_LEAVE, request.user).seq)

        return await self._run(context, leave)

    def _publish(self, request: pb.PublishRequest) -> pb.PublishResult:
        self.publish_ids.append(request.client_msg_id)
        try:
            room = self._room(request.room)
        except Refused as refused:
            return pb.PublishResult(error_code=refused.code, administrator=refused.hint or "")
        if request.user not in room.members:
            return pb.PublishResult(error_code="not_member", error_message="not a member")
        key = (request.user, request.client_msg_id)
        if key in room.sent:
            return pb.PublishResult(seq=room.sent[key], duplicate=True)
        seq = room.append(pb.ENTRY_KIND_MESSAGE, request.user, request.text).seq
        room.sent[key] = seq
        return pb.PublishResult(seq=seq)

    async def Publish(self, request, context):
        self.calls.append("Publish")
        result = self._publish(request)
        return pb.PublishResponse(seq=result.seq, duplicate=result.duplicate)

    async def PublishBatch(self, request, context):
        self.calls.append("PublishBatch")
        self.batch_sizes.append(len(request.publishes))
        return pb.PublishBatchResponse(results=[self._publish(p) for p in request.publishes])

    async def PublishStream(self, request_iterator, context):
        if not self.streams:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not implemented!")
        self.calls.append("PublishStream")
        async for request in request_iterator:
            self.batch_sizes.append(len(request.publishes))
            yield pb.PublishBatchResponse(results=[self._publish(p) for p in request.publishes])

    async def History(self, request, context):
        self.calls.append("History")

        def history() -> pb.HistoryResponse:
            room = self._room(request.room)
            if request.user not in room.members:
                raise Refused("not_member", grpc.StatusCode.FAILED_PRECONDITION)
            end = request.before_seq or len(room.entries)
            end = min(end, len(room.entries))
            start = max(0, end - min(request.limit or 50, 500))
            return pb.HistoryResponse(entries=room.entries[start:end])

        return await self._run(context, history)

    async def ListRooms(self, request, context):
        self.calls.append("ListRooms")
        if self.redirect_to is not None:
            return pb.ListRoomsResponse()
        return pb.ListRoomsResponse(
            rooms=[
                pb.RoomInfo(
                    room=name,
                    owner=room.owner,
                    member_count=len(room.members),
                    last_seq=len(room.entries) - 1,
                    administrator=self.node_id,
                )
                for name, room in self.rooms.items()
            ]
        )

    async def Members(self, request, context):
        self.calls.append("Members")

        def members() -> pb.MembersResponse:
            room = self._room(request.room)
            online = set().union(*room.online.values()) if room.online else set()
            return pb.MembersResponse(
                members=[pb.Member(user=u, online=u in online) for u in sorted(room.members)]
            )

        return await self._run(context, members)

    async def UpdatePresence(self, request, context):
        self.calls.append("UpdatePresence")
        self.presence_updates.append(request)

        def update() -> pb.UpdatePresenceResponse:
            room = self._room(request.room)
            users = room.online.setdefault(request.gateway_id, set())
            events = []
            for change in request.changes:
                (users.add if change.online else users.discard)(change.user)
                events.append(pb.PresenceEvent(user=change.user, online=change.online))
            for feed in room.feeds:
                feed.put_nowait(pb.SubscribeResponse(presence=events))
            return pb.UpdatePresenceResponse()

        return await self._run(context, update)

    async def Subscribe(self, request, context) -> AsyncIterator[pb.SubscribeResponse]:
        self.calls.append("Subscribe")
        self.subscribes.append(request)
        try:
            room = self._room(request.room)
        except Refused:
            await self._run(context, self._room, request.room)
            return
        fail_after, self.fail_next_subscribe_after = self.fail_next_subscribe_after, None
        feed: asyncio.Queue[pb.SubscribeResponse | None] = asyncio.Queue()
        room.feeds.append(feed)
        sent = 0
        try:
            backlog = [e for e in room.entries if e.seq >= request.from_seq]
            if backlog:
                yield pb.SubscribeResponse(entries=backlog)
                sent += len(backlog)
            while True:
                batch = await feed.get()
                if batch is None:
                    return  # the delete entry was the last one
                if fail_after is not None and sent + len(batch.entries) > fail_after:
                    context.set_trailing_metadata((("parley-code", "unavailable"),))
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "going down")
                sent += len(batch.entries)
                yield batch
        finally:
            room.feeds.remove(feed)


async def start_fake_node(
    node_id: str = "node-0", redirect_to: str | None = None
) -> tuple[grpc.aio.Server, FakeRoomService, str]:
    """Serve a FakeRoomService (and a SERVING health service) on 127.0.0.1:0."""
    server = grpc.aio.server(options=SERVER_OPTIONS)
    service = FakeRoomService(node_id, redirect_to)
    pb_grpc.add_RoomServiceServicer_to_server(service, server)
    health = health_aio.HealthServicer()
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, service, f"127.0.0.1:{port}"
