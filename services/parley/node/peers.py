"""Node-to-node replication over gRPC: the PeerService and its senders.

The gRPC half of the engine's transport (the simulation's network is the
other): the engine decides what leaves and when (`parley.room.engine`), this
module only carries it. One sender per peer keeps at most one Append in
flight; what the engine hands out meanwhile, over every room, rides in the
next one (group commit). A follower's answer comes back only after its
engine's Ready loop has made what it answers for durable.
"""

from __future__ import annotations

import asyncio
import contextlib

import grpc

from parley._generated import peer_service_pb2 as peer_pb
from parley._generated import peer_service_pb2_grpc as peer_grpc
from parley.cluster.channels import ChannelPool
from parley.observability import tracing
from parley.observability.log import get_logger
from parley.room.engine import Outbound

from .core import Located, NodeCore
from .errors import Context

log = get_logger("parley.node.peers")

RPC_TIMEOUT = 2.0
RETRY_DELAY = 0.1


class PeerServicer(peer_grpc.PeerServiceServicer):
    """Answers appends and votes from other nodes, each once it is durable."""

    def __init__(self, core: NodeCore) -> None:
        self.core = core

    async def Append(
        self, request: peer_pb.AppendRequest, context: Context
    ) -> peer_pb.AppendResponse:
        with tracing.span_from_metadata(
            "peer.append", context.invocation_metadata(), rooms=len(request.rooms)
        ):
            results = await self.core.step_appends(request.sender, list(request.rooms))
            return peer_pb.AppendResponse(rooms=results)

    async def RequestVote(
        self, request: peer_pb.RequestVoteRequest, context: Context
    ) -> peer_pb.RequestVoteResponse:
        results = await self.core.step_votes(request.candidate, list(request.rooms))
        return peer_pb.RequestVoteResponse(rooms=results)

    async def LocateRoom(
        self, request: peer_pb.LocateRoomRequest, context: Context
    ) -> peer_pb.LocateRoomResponse:
        replica = self.core.rooms.get(request.room)
        if replica is None or replica.last_index == 0:
            return peer_pb.LocateRoomResponse(known=False)
        return peer_pb.LocateRoomResponse(
            known=True,
            administrator=replica.administrator,
            replicas=replica.tip.replicas or replica.replicas,
            incarnation=replica.incarnation,
            serving=replica.serving,
            joining=replica.tip.joining,
            learners=sorted(replica.learners),
            committed=replica.commit_index >= replica.tip.config_index,
        )


class PeerSender:
    """Sends one peer the appends the engine hands out, one RPC at a time:
    whatever piles up meanwhile, over every room, rides in the next one."""

    def __init__(self, core: NodeCore, pool: ChannelPool, peer: str) -> None:
        self.core = core
        self.pool = pool
        self.peer = peer
        self.queue: list[Outbound] = []
        self.wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"send-{self.peer}")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.core.append_failed([m.id for m in self.queue])
        self.queue = []

    def add(self, message: Outbound) -> None:
        self.queue.append(message)
        self.wakeup.set()

    async def _run(self) -> None:
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            batch, self.queue = self.queue, []
            if not batch:
                continue
            try:
                await self._send(batch)
            except asyncio.CancelledError:
                self.core.append_failed([m.id for m in batch])
                raise
            except Exception:
                log.error("append sender failed", peer=self.peer, exc_info=True)
                self.core.append_failed([m.id for m in batch])
                await asyncio.sleep(RETRY_DELAY)
            if self.queue:
                self.wakeup.set()

    async def _send(self, batch: list[Outbound]) -> None:
        core = self.core
        appends = [m.body for m in batch if isinstance(m.body, peer_pb.RoomAppend)]
        request = peer_pb.AppendRequest(sender=core.node_id, rooms=appends)
        carriers = (
            [core.carriers.get((a.room, e.index)) for a in appends for e in a.entries]
            if core.carriers
            else []
        )
        try:
            with tracing.span_for_batch("node.replicate", carriers, peer=self.peer):
                stub = peer_grpc.PeerServiceStub(self.pool.get(self.peer))
                response = await stub.Append(
                    request, timeout=RPC_TIMEOUT, metadata=tracing.inject_metadata()
                )
        except (grpc.aio.AioRpcError, KeyError) as err:
            core.append_failed([m.id for m in batch])
            if isinstance(err, grpc.aio.AioRpcError):
                log.debug("append failed", peer=self.peer, code=err.code().name)
            await asyncio.sleep(RETRY_DELAY)
            return
        core.append_answered(
            self.peer, [(m.id, r) for m, r in zip(batch, response.rooms, strict=True)]
        )


class PeerTransport:
    """Every PeerSender of this node, plus vote requests."""

    def __init__(self, core: NodeCore, pool: ChannelPool) -> None:
        self.core = core
        self.pool = pool
        self.senders: dict[str, PeerSender] = {}
        self._vote_tasks: set[asyncio.Task[None]] = set()
        core.transport = self.send
        core.locate = self.locate

    def sender(self, peer: str) -> PeerSender:
        sender = self.senders.get(peer)
        if sender is None:
            sender = self.senders[peer] = PeerSender(self.core, self.pool, peer)
            sender.start()
        return sender

    def start(self) -> None:
        for peer in self.core.members():
            if peer != self.core.node_id:
                self.sender(peer)

    async def stop(self) -> None:
        for task in list(self._vote_tasks):
            task.cancel()
        await asyncio.gather(*(s.stop() for s in self.senders.values()), return_exceptions=True)

    def send(self, messages: list[Outbound]) -> None:
        """Hand the engine's messages out: appends to each peer's sender, vote
        requests in one call per peer."""
        votes: dict[str, list[peer_pb.RoomVote]] = {}
        for message in messages:
            if isinstance(message.body, peer_pb.RoomAppend):
                self.sender(message.to).add(message)
            elif isinstance(message.body, peer_pb.RoomVote):
                votes.setdefault(message.to, []).append(message.body)
        for peer, rooms in votes.items():
            task = asyncio.create_task(self._ask(peer, rooms))
            self._vote_tasks.add(task)
            task.add_done_callback(self._vote_tasks.discard)

    async def _ask(self, peer: str, votes: list[peer_pb.RoomVote]) -> None:
        request = peer_pb.RequestVoteRequest(candidate=self.core.node_id, rooms=votes)
        try:
            stub = peer_grpc.PeerServiceStub(self.pool.get(peer))
            response = await stub.RequestVote(request, timeout=RPC_TIMEOUT)
        except (grpc.aio.AioRpcError, KeyError):
            return
        self.core.votes_answered(peer, list(response.rooms))

    async def locate(self, room: str) -> Located:
        """Ask every other node about a room, up or not as far as health
        knows (a node just started may not have seen its peers yet)."""
        peers = [p for p in self.core.members() if p != self.core.node_id]

        async def ask(peer: str) -> peer_pb.LocateRoomResponse | None:
            try:
                stub = peer_grpc.PeerServiceStub(self.pool.get(peer))
                return await stub.LocateRoom(
                    peer_pb.LocateRoomRequest(room=room),
                    timeout=RPC_TIMEOUT / 2,
                    wait_for_ready=True,
                )
            except (grpc.aio.AioRpcError, KeyError):
                return None

        answers = await asyncio.gather(*(ask(p) for p in peers))
        known = [a for a in answers if a is not None and a.known]
        # a serving administrator's word first: it knows the room's group
        known.sort(key=lambda a: not a.serving)
        return Located(
            known[0] if known else None,
            sum(1 for a in answers if a is None),
            tuple(a.incarnation for a in known),
        )
