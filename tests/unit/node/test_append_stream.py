"""Replication on AppendStream, over real gRPC on 127.0.0.1.

Three NodeCores with their PeerService and PeerTransport. Appends travel on
one long-lived stream per pair of nodes; a peer that has no AppendStream (a
node of the previous release, during a rolling upgrade) gets unary Append
calls instead; a stream whose answer comes late is dropped and replication
goes on over a new one, the late answer never taken for a later request.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable

import grpc
import pytest
from parley._generated import peer_service_pb2 as peer_pb
from parley._generated import peer_service_pb2_grpc as peer_grpc
from parley.cluster.channels import ChannelPool
from parley.cluster.static import StaticDiscovery
from parley.node import peers
from parley.node.core import NodeCore
from parley.node.errors import Context
from parley.node.peers import PeerServicer, PeerTransport
from parley.room.memory_store import MemoryLogStore

NODES = ["n0", "n1", "n2"]


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class CountingServicer(PeerServicer):
    """The real servicer, counting what arrives how."""

    def __init__(self, core: NodeCore) -> None:
        super().__init__(core)
        self.unary = 0
        self.streams = 0
        self.streamed = 0

    async def Append(
        self, request: peer_pb.AppendRequest, context: Context
    ) -> peer_pb.AppendResponse:
        self.unary += 1
        return await super().Append(request, context)

    async def AppendStream(
        self, request_iterator: AsyncIterator[peer_pb.AppendRequest], context: Context
    ) -> AsyncIterator[peer_pb.AppendResponse]:
        self.streams += 1
        async for response in super().AppendStream(request_iterator, context):
            self.streamed += 1
            yield response


class OldServicer(CountingServicer):
    """A node of the previous release: no AppendStream (UNIMPLEMENTED)."""

    AppendStream = peer_grpc.PeerServiceServicer.AppendStream  # type: ignore[assignment]


class SlowFirstAnswer(CountingServicer):
    """Answers its first stream's first request only after the sender gave up."""

    delay = 0.0

    async def AppendStream(
        self, request_iterator: AsyncIterator[peer_pb.AppendRequest], context: Context
    ) -> AsyncIterator[peer_pb.AppendResponse]:
        first = self.streams == 0
        async for response in super().AppendStream(request_iterator, context):
            if first:
                first = False
                await asyncio.sleep(self.delay)
            yield response


Servicers = dict[str, CountingServicer]


@pytest.fixture
async def cluster(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[dict[str, NodeCore], Servicers]]:
    make: Callable[[str, NodeCore], CountingServicer] = getattr(
        request, "param", lambda _node, core: CountingServicer(core)
    )
    addresses = {n: f"127.0.0.1:{_port()}" for n in NODES}
    cores: dict[str, NodeCore] = {}
    servicers: Servicers = {}
    parts = []
    for node_id in NODES:
        core = NodeCore(
            node_id,
            MemoryLogStore(),
            members=lambda: dict(addresses),
            up_nodes=lambda: set(NODES),
            replication=3,
        )
        pool = ChannelPool(StaticDiscovery(dict(addresses)))
        transport = PeerTransport(core, pool)
        server = grpc.aio.server()
        servicer = make(node_id, core)
        peer_grpc.add_PeerServiceServicer_to_server(servicer, server)
        server.add_insecure_port(addresses[node_id])
        await core.start()
        await server.start()
        transport.start()
        cores[node_id], servicers[node_id] = core, servicer
        parts.append((core, server, transport, pool))
    servers.update({n: part[1] for n, part in zip(NODES, parts, strict=True)})
    addresses_of.update(addresses)
    yield cores, servicers
    for core, _server, transport, pool in parts:
        await transport.stop()
        await servers[core.node_id].stop(0)
        await core.stop()
        await pool.close()


servers: dict[str, grpc.aio.Server] = {}
addresses_of: dict[str, str] = {}


async def _restart_server(node_id: str, servicer: CountingServicer) -> None:
    """The node's gRPC server goes away and comes back on the same port
    (its core keeps running): every stream to it has ended."""
    await servers[node_id].stop(0)
    server = grpc.aio.server()
    peer_grpc.add_PeerServiceServicer_to_server(servicer, server)
    server.add_insecure_port(addresses_of[node_id])
    await server.start()
    servers[node_id] = server


async def _created_everywhere(cores: dict[str, NodeCore], room: str) -> None:
    for node_id in NODES:
        try:
            await cores[node_id].create_room(room, "alice")
            break
        except Exception:
            continue
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if all(room in c.rooms and c.rooms[room].commit_index >= 1 for c in cores.values()):
            return
        await asyncio.sleep(0.05)
    held = {n: (c.rooms[room].last_index if room in c.rooms else None) for n, c in cores.items()}
    raise AssertionError(f"{room} did not reach every node: {held}")


async def test_appends_travel_on_one_stream_per_peer(
    cluster: tuple[dict[str, NodeCore], Servicers],
) -> None:
    cores, servicers = cluster
    for i in range(5):
        await _created_everywhere(cores, f"room-{i}")
    assert sum(s.streamed for s in servicers.values()) > 0
    assert sum(s.unary for s in servicers.values()) == 0
    # one stream per sender: at most one from each of the two others
    assert all(s.streams <= 2 for s in servicers.values())


@pytest.mark.parametrize(
    "cluster",
    [lambda node, core: OldServicer(core) if node == "n2" else CountingServicer(core)],
    indirect=True,
)
async def test_a_peer_without_the_stream_gets_unary_appends(
    cluster: tuple[dict[str, NodeCore], Servicers],
) -> None:
    cores, servicers = cluster
    for i in range(3):
        await _created_everywhere(cores, f"room-{i}")
    assert servicers["n2"].unary > 0 and servicers["n2"].streamed == 0
    assert servicers["n0"].unary == servicers["n1"].unary == 0


@pytest.mark.parametrize("cluster", [lambda node, core: SlowFirstAnswer(core)], indirect=True)
async def test_a_late_answer_drops_the_stream(
    cluster: tuple[dict[str, NodeCore], Servicers], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(peers, "RPC_TIMEOUT", 0.3)
    SlowFirstAnswer.delay = 0.6
    cores, servicers = cluster
    for i in range(3):
        await _created_everywhere(cores, f"room-{i}")
    # a sender gave up on its first stream and opened another
    assert any(s.streams >= 2 for s in servicers.values())
    logs = {n: [e.index for e in c.rooms["room-0"].log] for n, c in cores.items()}
    assert len({tuple(v) for v in logs.values()}) == 1, logs


async def test_a_peer_that_went_away_gets_appends_again_when_back(
    cluster: tuple[dict[str, NodeCore], Servicers],
) -> None:
    """The fault suite's case: a stream to a peer that went away has ended
    (a write raises InvalidStateError); the sender must open a new one once
    the peer is back, not fail every batch on the dead one for ever."""
    cores, servicers = cluster
    await _created_everywhere(cores, "room-0")
    opened = sum(s.streams for s in servicers.values())
    for node_id in NODES:
        await _restart_server(node_id, servicers[node_id])
    await _created_everywhere(cores, "room-1")
    assert sum(s.streams for s in servicers.values()) >= opened + 2
