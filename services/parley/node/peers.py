"""Node-to-node replication over gRPC: the PeerService and its senders.

One sender per peer keeps at most one Append in flight; whatever becomes
ready meanwhile, over every room, rides in the next one (group commit). The
answer comes back only after the follower has made the entries durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import grpc

from parley._generated import peer_service_pb2 as peer_pb
from parley._generated import peer_service_pb2_grpc as peer_grpc
from parley.cluster.channels import ChannelPool
from parley.observability import tracing
from parley.observability.log import get_logger
from parley.room.replica import Role, RoomReplica

from .core import NodeCore, now_ms

log = get_logger("parley.node.peers")

RPC_TIMEOUT = 2.0
RETRY_DELAY = 0.1


_Result = TypeVar("_Result")
_RoomItem = Any  # a RoomAppend or RoomVote: anything with a .room
_Handle = Callable[[RoomReplica, Any, int], _Result]


class PeerServicer(peer_grpc.PeerServiceServicer):
    """Answers appends and votes from other nodes."""

    def __init__(self, core: NodeCore) -> None:
        self.core = core

    async def _answer(self, items: Iterable[_RoomItem], handle: _Handle[_Result]) -> list[_Result]:
        """Feed each room's part of a peer's request to its replica; answer once
        everything it changed is durable (a vote or an ack must survive a crash)."""
        core = self.core
        now = now_ms()
        results = []
        for item in items:
            replica = core.replica_for_peer(item.room)
            results.append(handle(replica, item, now))
            core.after(replica)
        await core.durable()
        return results

    async def Append(
        self, request: peer_pb.AppendRequest, context: grpc.aio.ServicerContext
    ) -> peer_pb.AppendResponse:
        with tracing.span_from_metadata(
            "peer.append", context.invocation_metadata(), rooms=len(request.rooms)
        ):
            results = await self._answer(
                request.rooms, lambda r, m, now: r.handle_append(request.sender, m, now)
            )
            return peer_pb.AppendResponse(rooms=results)

    async def RequestVote(
        self, request: peer_pb.RequestVoteRequest, context: grpc.aio.ServicerContext
    ) -> peer_pb.RequestVoteResponse:
        results = await self._answer(
            request.rooms, lambda r, v, now: r.handle_vote(request.candidate, v, now)
        )
        return peer_pb.RequestVoteResponse(rooms=results)

    async def LocateRoom(
        self, request: peer_pb.LocateRoomRequest, context: grpc.aio.ServicerContext
    ) -> peer_pb.LocateRoomResponse:
        replica = self.core.rooms.get(request.room)
        if replica is None or replica.last_index == 0:
            return peer_pb.LocateRoomResponse(known=False)
        return peer_pb.LocateRoomResponse(
            known=True, administrator=replica.administrator, replicas=replica.replicas
        )


class PeerSender:
    """Sends one peer every append and heartbeat, batched over rooms."""

    def __init__(self, core: NodeCore, pool: ChannelPool, peer: str) -> None:
        self.core = core
        self.pool = pool
        self.peer = peer
        self.dirty: set[str] = set()
        self.wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_heartbeat = 0.0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"send-{self.peer}")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def mark(self, room: str) -> None:
        self.dirty.add(room)
        self.wakeup.set()

    def _stub(self) -> peer_grpc.PeerServiceStub:
        return peer_grpc.PeerServiceStub(self.pool.get(self.peer))

    async def _run(self) -> None:
        heartbeat = self.core.timing.heartbeat_ms / 1000
        while True:
            timeout = max(0.0, self._last_heartbeat + heartbeat - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wakeup.wait(), timeout)
            self.wakeup.clear()
            try:
                await self._send_once(heartbeat)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.error("append sender failed", peer=self.peer, exc_info=True)
                await asyncio.sleep(RETRY_DELAY)

    async def _send_once(self, heartbeat: float) -> None:
        core = self.core
        rooms = self.dirty
        self.dirty = set()
        now_mono = time.monotonic()
        if now_mono - self._last_heartbeat >= heartbeat:
            self._last_heartbeat = now_mono
            rooms |= {room for room in core.administered if self.peer in core.rooms[room].peers}
        if not rooms:
            return
        now = now_ms()
        sent: list[tuple[RoomReplica, peer_pb.RoomAppend]] = []
        for room in rooms:
            replica = core.rooms.get(room)
            if replica is None or replica.role is not Role.ADMINISTRATOR:
                continue
            msg = replica.append_for(self.peer, now)
            if msg is not None:
                sent.append((replica, msg))
        if not sent:
            return
        request = peer_pb.AppendRequest(sender=core.node_id, rooms=[m for _, m in sent])
        carriers = (
            [core.carriers.get((m.room, e.index)) for _, m in sent for e in m.entries]
            if core.carriers
            else []
        )
        try:
            with tracing.span_for_batch("node.replicate", carriers, peer=self.peer):
                response = await self._stub().Append(
                    request, timeout=RPC_TIMEOUT, metadata=tracing.inject_metadata()
                )
        except (grpc.aio.AioRpcError, KeyError) as err:
            for replica, msg in sent:
                replica.append_failed(self.peer, msg)
                core.after(replica)
            if isinstance(err, grpc.aio.AioRpcError):
                log.debug("append failed", peer=self.peer, code=err.code().name)
            await asyncio.sleep(RETRY_DELAY)
            return
        now = now_ms()
        for (replica, msg), result in zip(sent, response.rooms, strict=True):
            replica.handle_append_result(self.peer, msg, result, now)
            core.after(replica)
        # anything still unsent (large backlogs) goes at once
        for replica, _ in sent:
            if self.peer in replica.dirty_peers:
                self.dirty.add(replica.room)
        if self.dirty:
            self.wakeup.set()


class PeerTransport:
    """Every PeerSender of this node, plus vote requests."""

    def __init__(self, core: NodeCore, pool: ChannelPool) -> None:
        self.core = core
        self.pool = pool
        self.senders: dict[str, PeerSender] = {}
        self._vote_tasks: set[asyncio.Task[None]] = set()
        core.on_dirty_peer = self.mark
        core.on_campaigns = self.request_votes
        core.locate = self.locate

    def sender(self, peer: str) -> PeerSender:
        sender = self.senders.get(peer)
        if sender is None:
            sender = self.senders[peer] = PeerSender(self.core, self.pool, peer)
            sender.start()
        return sender

    def mark(self, peer: str, room: str) -> None:
        self.sender(peer).mark(room)

    def start(self) -> None:
        for peer in self.core.members():
            if peer != self.core.node_id:
                self.sender(peer)

    async def stop(self) -> None:
        for task in list(self._vote_tasks):
            task.cancel()
        await asyncio.gather(*(s.stop() for s in self.senders.values()), return_exceptions=True)

    def request_votes(self, campaigns: list[RoomReplica]) -> None:
        """Ask every peer, in one call each, for votes in these campaigns."""
        by_peer: dict[str, list[tuple[RoomReplica, peer_pb.RoomVote]]] = {}
        for replica in campaigns:
            vote = replica.vote_request()
            for peer in replica.peers:
                by_peer.setdefault(peer, []).append((replica, vote))
        for peer, votes in by_peer.items():
            task = asyncio.create_task(self._ask(peer, votes))
            self._vote_tasks.add(task)
            task.add_done_callback(self._vote_tasks.discard)

    async def _ask(self, peer: str, votes: list[tuple[RoomReplica, peer_pb.RoomVote]]) -> None:
        request = peer_pb.RequestVoteRequest(
            candidate=self.core.node_id, rooms=[v for _, v in votes]
        )
        try:
            stub = peer_grpc.PeerServiceStub(self.pool.get(peer))
            response = await stub.RequestVote(request, timeout=RPC_TIMEOUT)
        except (grpc.aio.AioRpcError, KeyError):
            return
        now = now_ms()
        for (replica, vote), result in zip(votes, response.rooms, strict=True):
            replica.handle_vote_result(peer, vote, result, now)
            self.core.after(replica)

    async def locate(self, room: str) -> peer_pb.LocateRoomResponse | None:
        """Ask every up peer about a room; the first that holds it answers."""
        peers = [p for p in self.core.up_nodes() if p != self.core.node_id]

        async def ask(peer: str) -> peer_pb.LocateRoomResponse | None:
            try:
                stub = peer_grpc.PeerServiceStub(self.pool.get(peer))
                return await stub.LocateRoom(
                    peer_pb.LocateRoomRequest(room=room), timeout=RPC_TIMEOUT / 2
                )
            except (grpc.aio.AioRpcError, KeyError):
                return None

        for found in await asyncio.gather(*(ask(p) for p in peers)):
            if found is not None and found.known:
                return found
        return None
