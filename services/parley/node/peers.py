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
from collections.abc import AsyncIterator

import grpc

from parley._generated import peer_service_pb2 as peer_pb
from parley._generated import peer_service_pb2_grpc as peer_grpc
from parley.cluster.channels import ChannelPool
from parley.cluster.streams import RequestStream, StreamLost
from parley.observability import metrics, tracing
from parley.observability.log import get_logger
from parley.room.codec import entry_from_pb, entry_to_pb
from parley.room.engine import Outbound

from .core import Located, NodeCore
from .errors import Context

log = get_logger("parley.node.peers")

RPC_TIMEOUT = 2.0
RETRY_DELAY = 0.1
LOCATE_LINGER = 0.002
"""Seconds a LocateRooms call waits for more rooms while creates pile up."""
# a snapshot's history goes in chunks of this many entries (a few MB at most)
HISTORY_CHUNK = 2000
SNAPSHOT_TIMEOUT = 30.0
# snapshots one sender transfers at once (a wiped node may need thousands)
SNAPSHOTS_IN_FLIGHT = 4


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

    async def AppendStream(
        self, request_iterator: AsyncIterator[peer_pb.AppendRequest], context: Context
    ) -> AsyncIterator[peer_pb.AppendResponse]:
        async for request in request_iterator:
            with tracing.span_from_traceparent(
                "peer.append", request.traceparent, rooms=len(request.rooms)
            ):
                results = await self.core.step_appends(request.sender, list(request.rooms))
            yield peer_pb.AppendResponse(rooms=results)

    async def RequestVote(
        self, request: peer_pb.RequestVoteRequest, context: Context
    ) -> peer_pb.RequestVoteResponse:
        results = await self.core.step_votes(request.candidate, list(request.rooms))
        return peer_pb.RequestVoteResponse(rooms=results)

    async def StageHistory(
        self, request: peer_pb.StageHistoryRequest, context: Context
    ) -> peer_pb.StageHistoryResponse:
        await self.core.store.stage(request.room, [entry_from_pb(e) for e in request.entries])
        return peer_pb.StageHistoryResponse()

    async def InstallSnapshot(
        self, request: peer_pb.InstallSnapshotRequest, context: Context
    ) -> peer_pb.InstallSnapshotResponse:
        result = await self.core.step_snapshot(request.sender, request.snapshot)
        return peer_pb.InstallSnapshotResponse(result=result)

    async def LocateRoom(
        self, request: peer_pb.LocateRoomRequest, context: Context
    ) -> peer_pb.LocateRoomResponse:
        return self._locate(request.room)

    async def LocateRooms(
        self, request: peer_pb.LocateRoomsRequest, context: Context
    ) -> peer_pb.LocateRoomsResponse:
        return peer_pb.LocateRoomsResponse(rooms=[self._locate(room) for room in request.rooms])

    def _locate(self, room: str) -> peer_pb.LocateRoomResponse:
        replica = self.core.rooms.get(room)
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
        self._transfers: set[asyncio.Task[None]] = set()
        self._transfer_slots = asyncio.Semaphore(SNAPSHOTS_IN_FLIGHT)
        self._stub: tuple[grpc.aio.Channel, peer_grpc.PeerServiceAsyncStub] | None = None
        self._streaming = True
        """False once the peer said it has no AppendStream (then unary Append)."""
        self._stream = RequestStream[peer_pb.AppendRequest, peer_pb.AppendResponse](
            peer_pb.AppendResponse
        )

    def stub(self) -> peer_grpc.PeerServiceAsyncStub:
        """The stub on the peer's current channel (a stub builds a callable
        per method: tens of microseconds per Append when built each time)."""
        channel = self.pool.get(self.peer)
        if self._stub is None or self._stub[0] is not channel:
            self._stub = (channel, peer_grpc.PeerServiceStub(channel))
        return self._stub[1]

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"send-{self.peer}")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._stream.drop()
        for task in list(self._transfers):
            task.cancel()
        await asyncio.gather(*self._transfers, return_exceptions=True)
        self.core.append_failed([m.id for m in self.queue])
        self.queue = []

    def add(self, message: Outbound) -> None:
        if isinstance(message.body, peer_pb.RoomSnapshot):
            if self.peer not in self.core.up_nodes():
                # a transfer to a node the detector sees down could only
                # fail, after a task and a warning per room (a dead node's
                # thousands of rooms): fail it now; its return retries
                asyncio.get_running_loop().call_soon(self.core.append_failed, [message.id])
                return
            task = asyncio.create_task(self._transfer(message, message.body))
            self._transfers.add(task)
            task.add_done_callback(self._transfers.discard)
            return
        self.queue.append(message)
        self.wakeup.set()

    async def _transfer(self, message: Outbound, snapshot: peer_pb.RoomSnapshot) -> None:
        """Send a snapshot: first the committed history the peer lacks, in
        chunks it stages, then the snapshot itself, which it installs with
        that history. Answered (or failed) like an append."""
        core = self.core
        try:
            async with self._transfer_slots:
                stub = self.stub()
                after, copied = snapshot.have_index, 0
                while after < snapshot.index:
                    chunk = await core.store.entries(
                        snapshot.room, after, snapshot.index, HISTORY_CHUNK
                    )
                    if not chunk:
                        break  # (nothing stored further: retention took it)
                    await stub.StageHistory(
                        peer_pb.StageHistoryRequest(
                            sender=core.node_id,
                            room=snapshot.room,
                            entries=[entry_to_pb(e) for e in chunk],
                        ),
                        timeout=SNAPSHOT_TIMEOUT,
                    )
                    after = chunk[-1].index
                    copied += len(chunk)
                response = await stub.InstallSnapshot(
                    peer_pb.InstallSnapshotRequest(sender=core.node_id, snapshot=snapshot),
                    timeout=SNAPSHOT_TIMEOUT,
                )
        except asyncio.CancelledError:
            core.append_failed([message.id])
            raise
        except Exception as err:
            # (an RPC error, a peer gone from discovery, a damaged entry here)
            log.warning(
                "snapshot transfer failed", peer=self.peer, room=snapshot.room, err=repr(err)
            )
            core.append_failed([message.id])
            await asyncio.sleep(RETRY_DELAY)
            return
        metrics.SNAPSHOTS.labels(direction="sent").inc()
        metrics.SNAPSHOT_ENTRIES.inc(copied)
        log.info(
            "snapshot sent",
            peer=self.peer,
            room=snapshot.room,
            index=snapshot.index,
            history=copied,
        )
        core.append_answered(self.peer, [(message.id, response.result)])

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
                if self._streaming:
                    request.traceparent = tracing.traceparent()
                    response = await self._stream.exchange(
                        self.pool.get(self.peer),
                        # (no request iterator: requests go in with write())
                        self.stub().AppendStream,  # type: ignore[arg-type]
                        request,
                        RPC_TIMEOUT,
                    )
                else:
                    response = await self.stub().Append(
                        request, timeout=RPC_TIMEOUT, metadata=tracing.inject_metadata()
                    )
        except (grpc.aio.AioRpcError, KeyError, TimeoutError, StreamLost) as err:
            # (a failed exchange has dropped its stream already)
            core.append_failed([m.id for m in batch])
            if isinstance(err, grpc.aio.AioRpcError):
                if err.code() is grpc.StatusCode.UNIMPLEMENTED and self._streaming:
                    # a node without AppendStream (a rolling upgrade): unary calls
                    log.info("peer has no AppendStream; using Append", peer=self.peer)
                    self._streaming = False
                log.debug("append failed", peer=self.peer, code=err.code().name)
            await asyncio.sleep(RETRY_DELAY)
            return
        core.append_answered(
            self.peer, [(m.id, r) for m, r in zip(batch, response.rooms, strict=True)]
        )


class LocateBatcher:
    """Asks one peer about rooms, one LocateRooms call at a time: the rooms
    asked about meanwhile ride in the next (concurrent creates share it)."""

    def __init__(self, pool: ChannelPool, peer: str) -> None:
        self.pool = pool
        self.peer = peer
        self._waiting: dict[str, list[asyncio.Future[peer_pb.LocateRoomResponse | None]]] = {}
        self._task: asyncio.Task[None] | None = None

    def ask(self, room: str) -> asyncio.Future[peer_pb.LocateRoomResponse | None]:
        """The peer's answer about the room, or None if it did not answer
        (a future, not a coroutine: a create waits on several, and tasks
        for them would cost more than the batched call)."""
        future: asyncio.Future[peer_pb.LocateRoomResponse | None] = (
            asyncio.get_running_loop().create_future()
        )
        self._waiting.setdefault(room, []).append(future)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"locate-{self.peer}")
        return future

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        busy = False
        while self._waiting:
            if busy:
                # creates are arriving faster than one call per round trip:
                # let a few more join the next call (a create waits on far
                # more than this; a lone one never does)
                await asyncio.sleep(LOCATE_LINGER)
            batch, self._waiting = self._waiting, {}
            rooms = list(batch)
            busy = len(rooms) > 1
            answers: list[peer_pb.LocateRoomResponse | None] = [None] * len(rooms)
            try:
                stub = peer_grpc.PeerServiceStub(self.pool.get(self.peer))
                response = await stub.LocateRooms(
                    peer_pb.LocateRoomsRequest(rooms=rooms),
                    timeout=RPC_TIMEOUT / 2,
                    wait_for_ready=True,
                )
                if len(response.rooms) == len(rooms):
                    answers = list(response.rooms)
            except (grpc.aio.AioRpcError, KeyError):
                pass  # every room of the batch: no answer
            finally:
                for room, answer in zip(rooms, answers, strict=True):
                    for future in batch[room]:
                        if not future.done():
                            future.set_result(answer)


class PeerTransport:
    """Every PeerSender of this node, plus vote requests."""

    def __init__(self, core: NodeCore, pool: ChannelPool) -> None:
        self.core = core
        self.pool = pool
        self.senders: dict[str, PeerSender] = {}
        self.locators: dict[str, LocateBatcher] = {}
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
        await asyncio.gather(*(b.stop() for b in self.locators.values()), return_exceptions=True)
        await asyncio.gather(*(s.stop() for s in self.senders.values()), return_exceptions=True)

    def send(self, messages: list[Outbound]) -> None:
        """Hand the engine's messages out: appends to each peer's sender, vote
        requests in one call per peer."""
        votes: dict[str, list[peer_pb.RoomVote]] = {}
        for message in messages:
            if isinstance(message.body, peer_pb.RoomAppend | peer_pb.RoomSnapshot):
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
        for peer in peers:
            if peer not in self.locators:
                self.locators[peer] = LocateBatcher(self.pool, peer)
        answers = await asyncio.gather(*(self.locators[p].ask(room) for p in peers))
        known = [a for a in answers if a is not None and a.known]
        # a serving administrator's word first: it knows the room's group
        known.sort(key=lambda a: not a.serving)
        return Located(
            known[0] if known else None,
            sum(1 for a in answers if a is None),
            tuple(a.incarnation for a in known),
        )
