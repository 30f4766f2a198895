"""NodeCore on the real engine loop, three cores wired by an in-process network.

No gRPC here (the integration and fault suites run real processes): what is
tested is the node's own driver — serving, proposals and their waiters,
reads, draining by leadership transfer, and what a lost reign fails.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from parley._generated import peer_service_pb2 as peer_pb
from parley.node.core import NodeCore
from parley.room.engine import Outbound
from parley.room.entries import EntryKind
from parley.room.errors import NotAdministrator, NotFound
from parley.room.memory_store import MemoryLogStore
from parley.room.replica import Role, RoomReplica
from support.wait import wait_for

NODES = ["n0", "n1", "n2"]


class LocalNet:
    """Carries the engines' messages between cores in this process."""

    def __init__(self) -> None:
        self.cores: dict[str, NodeCore] = {}
        self.down: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def up(self) -> set[str]:
        return set(self.cores) - self.down

    def transport(self, src: str) -> object:
        def send(messages: list[Outbound]) -> None:
            for message in messages:
                task = asyncio.create_task(self._deliver(src, message))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

        return send

    async def _deliver(self, src: str, message: Outbound) -> None:
        sender = self.cores[src]
        if message.to in self.down or src in self.down:
            if isinstance(message.body, peer_pb.RoomAppend):
                sender.append_failed([message.id])
            return
        dst = self.cores[message.to]
        if isinstance(message.body, peer_pb.RoomAppend):
            (result,) = await dst.step_appends(src, [message.body])
            sender.append_answered(message.to, [(message.id, result)])
        elif isinstance(message.body, peer_pb.RoomVote):
            results = await dst.step_votes(src, [message.body])
            sender.votes_answered(message.to, results)


@pytest.fixture
async def net() -> AsyncIterator[LocalNet]:
    network = LocalNet()
    for node in NODES:
        core = NodeCore(
            node,
            MemoryLogStore(),
            members=lambda: dict.fromkeys(NODES, ""),
            up_nodes=network.up,
            replication=3,
        )
        core.transport = network.transport(node)  # type: ignore[assignment]
        network.cores[node] = core
    for core in network.cores.values():
        await core.start()
    yield network
    for core in network.cores.values():
        await core.stop()


async def serving(net: LocalNet, room: str) -> tuple[NodeCore, RoomReplica]:
    """Ask each core in turn until one serves the room (following hints)."""

    async def attempt() -> tuple[NodeCore, RoomReplica] | None:
        for core in net.cores.values():
            if core.node_id in net.down:
                continue
            try:
                return core, await core.serving_replica(room, timeout=0.5)
            except NotAdministrator:
                continue
        return None

    return await wait_for(attempt, 10, message=f"an administrator for {room}")


async def create(net: LocalNet, room: str) -> tuple[NodeCore, RoomReplica]:
    """Create the room at the first core that takes it; its founder serves it."""

    async def attempt() -> tuple[NodeCore, RoomReplica] | None:
        for core in net.cores.values():
            if core.node_id in net.down:
                continue
            try:
                entry = await core.create_room(room, "alice")
            except NotAdministrator:
                continue
            assert entry.kind is EntryKind.CREATE and entry.seq == 0
            return core, core.rooms[room]
        return None

    return await wait_for(attempt, 10, message=f"a founder for {room}")


async def test_a_room_is_created_and_replicated(net: LocalNet) -> None:
    core, replica = await create(net, "lobby")
    message = await core.propose(replica, EntryKind.MESSAGE, "alice", "hi", "m1")
    assert message.seq == 1

    def stored(core: NodeCore) -> list[str]:
        entries = core.store.store.entries("lobby", 0, 100, 100)
        return [e.text for e in entries if e.kind is EntryKind.MESSAGE]

    for other in net.cores.values():
        await wait_for(
            lambda o=other: (r := o.rooms.get("lobby")) and r.commit_index >= message.index,
            5,
            message=f"{other.node_id} commits",
        )
        # (a follower may learn of the commit before its own write is durable)
        await wait_for(lambda o=other: stored(o) == ["hi"], 5, message=f"{other.node_id} holds it")


async def test_reads_are_confirmed_on_the_administrator_only(net: LocalNet) -> None:
    core, replica = await create(net, "lobby")
    await core.confirm_read(replica)  # a majority answers: no error
    follower = next(c for c in net.cores.values() if c is not core)
    await wait_for(lambda: "lobby" in follower.rooms, 5)
    with pytest.raises(NotAdministrator):
        await follower.confirm_read(follower.rooms["lobby"])


async def test_hand_over_moves_rooms_and_never_takes_them_back(net: LocalNet) -> None:
    core, _ = await create(net, "lobby")
    core.hand_over()
    await wait_for(lambda: not core.administered, 5, message="the drained node lets go")
    new, new_replica = await serving(net, "lobby")
    assert new is not core
    entry = await new.propose(new_replica, EntryKind.MESSAGE, "bob", "after", "m2")
    assert entry.seq == 1  # nothing lost, nothing skipped
    for _ in range(20):  # ticks meanwhile: the drained node never campaigns
        core.tick()
        await asyncio.sleep(0.01)
    assert core.rooms["lobby"].role is Role.FOLLOWER
    with pytest.raises(NotAdministrator):
        await core.serving_replica("lobby", timeout=0.2)


async def test_requests_for_unknown_rooms_leave_nothing_behind(net: LocalNet) -> None:
    """Only a create starts a room; anything else about a room nobody holds is
    NotFound, with no replica, no stored state and no election anywhere."""
    for i in range(200):
        core = net.cores[NODES[i % 3]]
        with pytest.raises(NotFound):
            await core.serving_replica(f"nobody-{i}")
    for core in net.cores.values():
        assert core.rooms == {}
        assert await core.store.load() == {}
    core, replica = await create(net, "real")  # a create still works
    assert replica.serving


async def test_a_lost_reign_fails_its_waiting_proposals(net: LocalNet) -> None:
    core, replica = await create(net, "lobby")
    net.down = set(net.cores) - {core.node_id}  # its followers are gone
    pending = core.propose(replica, EntryKind.MESSAGE, "alice", "stranded", "m1")
    replica.step_down(0)  # as its tick does once no majority answers
    core.engine.heartbeat("lobby")  # any input: the next Ready reports the change
    core.loop.kick()
    with pytest.raises(NotAdministrator):
        await asyncio.wait_for(pending, 5)
    assert "lobby" not in core.administered


async def test_a_barrier_on_a_quiet_room_whose_log_is_folded(net: LocalNet) -> None:
    """A quiescent room folds its whole log out of memory; waiting for what
    is already committed (a join of a member, a retried publish) still
    answers at once, and the room wakes and commits new entries."""
    core, replica = await create(net, "calm")
    await core.propose(replica, EntryKind.MESSAGE, "alice", "hi", "m1")
    for _ in range(100):  # ticks until every replica is quiet and folded
        core.tick()
        await asyncio.sleep(0.02)
        if all(c.rooms["calm"].quiet and not c.rooms["calm"].log for c in net.cores.values()):
            break
    assert not replica.log and replica.offset == replica.last_index == replica.commit_index
    await asyncio.wait_for(core.wait_commit(replica, replica.last_index), 1)
    message = await core.propose(replica, EntryKind.MESSAGE, "alice", "again", "m2")
    assert message.seq == 2


async def test_large_rooms_announce_no_online_or_offline(net: LocalNet) -> None:
    """Online/offline reaches a room's subscribers only while the room has at
    most `presence_limit` members; the presence book keeps them all."""
    core, replica = await create(net, "lobby")
    core.presence_limit = 2
    told: list[tuple[str, str, bool]] = []
    core.hub.presence = lambda room, user, online: told.append((room, user, online))  # type: ignore[method-assign]
    await core.propose(replica, EntryKind.JOIN, "bob", "", "")
    core.presence.change("lobby", "g1", "bob", True)  # two members: small
    await core.propose(replica, EntryKind.JOIN, "carol", "", "")
    core.presence.change("lobby", "g1", "carol", True)  # three: large
    core.presence.change("lobby", "g1", "bob", False)
    assert told == [("lobby", "bob", True)]
    assert core.presence.online("lobby", "carol") and not core.presence.online("lobby", "bob")
