"""The scale-up split, exactly: new nodes whose health watches have seen nobody yet.

Five NodeCores with their real PeerService and PeerTransport over gRPC on
127.0.0.1. The three old nodes know only each other; the two new ones know all
five but their failure detector reports nobody up (the window right after a
pod starts, before its health watches connect). Requests for rooms whose new
placement the two new nodes form a majority of reach them first. They must
redirect to the room's group — never answer "not found", never create, store
or elect a copy. The same test against a transport that asks only the peers
its detector sees up (what the old LocateRoom did) shows the split.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import grpc
import pytest
from parley._generated import peer_service_pb2_grpc as peer_grpc
from parley.cluster.channels import ChannelPool
from parley.cluster.placement import replicas_for
from parley.cluster.static import StaticDiscovery
from parley.node.core import Located, NodeCore
from parley.node.peers import PeerServicer, PeerTransport
from parley.room.errors import NotAdministrator, NotFound, RoomError
from parley.room.memory_store import MemoryLogStore

OLD = ["n0", "n1", "n2"]
NEW = ["n3", "n4"]
ALL = OLD + NEW


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Node:
    core: NodeCore
    server: grpc.aio.Server
    transport: PeerTransport
    pool: ChannelPool


@pytest.fixture
async def nodes() -> AsyncIterator[dict[str, Node]]:
    addresses = {n: f"127.0.0.1:{_port()}" for n in ALL}
    made: dict[str, Node] = {}
    for node_id in ALL:
        known = ALL if node_id in NEW else OLD
        members = {n: addresses[n] for n in known}
        # old nodes see each other up; new ones have seen nobody yet
        up = (lambda: set(OLD)) if node_id in OLD else (lambda n=node_id: {n})
        core = NodeCore(
            node_id,
            MemoryLogStore(),
            members=lambda m=members: dict(m),
            up_nodes=up,
            replication=3,
        )
        pool = ChannelPool(StaticDiscovery(members))
        transport = PeerTransport(core, pool)
        server = grpc.aio.server()
        peer_grpc.add_PeerServiceServicer_to_server(PeerServicer(core), server)
        server.add_insecure_port(addresses[node_id])
        await core.start()
        await server.start()
        transport.start()
        made[node_id] = Node(core, server, transport, pool)
    yield made
    for node in made.values():
        await node.transport.stop()
        await node.server.stop(0)
        await node.core.stop()
        await node.pool.close()


async def _create(nodes: dict[str, Node], room: str) -> None:
    for node_id in OLD:
        try:
            await nodes[node_id].core.create_room(room, "alice")
            return
        except NotAdministrator:
            continue
    raise AssertionError(f"nobody created {room}")


async def _outcomes(nodes: dict[str, Node], rooms: list[str]) -> list[RoomError | None]:
    outcomes: list[RoomError | None] = []
    for room in rooms:
        for node_id in NEW:
            core = nodes[node_id].core
            for attempt in (core.serving_replica(room, timeout=1), core.create_room(room, "eve")):
                try:
                    await attempt
                    outcomes.append(None)  # served or created: a second copy
                except RoomError as err:
                    outcomes.append(err)
    return outcomes


def _split_rooms() -> list[str]:
    rooms = [f"room-{i}" for i in range(60)]
    split = [r for r in rooms if set(replicas_for(r, ALL, 3)) >= set(NEW)]
    assert split
    return split[:6]


async def test_new_nodes_redirect_before_their_detector_sees_anyone(
    nodes: dict[str, Node],
) -> None:
    rooms = _split_rooms()
    for room in rooms:
        await _create(nodes, room)
    outcomes = await _outcomes(nodes, rooms)
    assert all(isinstance(o, NotAdministrator) for o in outcomes), outcomes
    for node_id in NEW:
        core = nodes[node_id].core
        assert core.rooms == {}
        assert await core.store.load() == {}


def _up_only(core: NodeCore, transport: PeerTransport) -> Callable[[str], Awaitable[Located]]:
    async def locate(room: str) -> Located:
        members = core.members
        core.members = lambda: {p: "" for p in core.up_nodes()}  # type: ignore[method-assign]
        try:
            return await transport.locate(room)
        finally:
            core.members = members  # type: ignore[method-assign]

    return locate


async def test_asking_only_the_peers_seen_up_would_split_the_room(
    nodes: dict[str, Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The planted bug: LocateRoom asked only of peers the detector sees up."""
    rooms = _split_rooms()
    for room in rooms:
        await _create(nodes, room)
    for node_id in NEW:
        core, transport = nodes[node_id].core, nodes[node_id].transport
        monkeypatch.setattr(core, "locate", _up_only(core, transport))
    outcomes = await _outcomes(nodes, rooms)
    # "does not exist" for rooms that exist, and a second room founded
    assert any(isinstance(o, NotFound) for o in outcomes)
    assert any(o is None for o in outcomes)
