"""Room moves (parley.coordination.move) on the production engine, deterministically.

Scripted: a move's steps one by one; a crash of the coordinator, of a
participant, of a node in both groups and of a leaving node at every step of
its Ready loop (each run crashes at the k-th step, k = 1, 2, ... until the
move no longer reaches that step); concurrent moves of different rooms.
Randomized: the simulation with moves among its faults (lost, duplicated and
reordered messages, partitions, pauses, crashes anywhere). The checker runs on
every step: one administrator per epoch, one entry per (index, epoch),
committed prefixes that agree, every acknowledged entry kept, visible seqs
rising by exactly 1 — so no two groups can both have accepted writes.
"""

from __future__ import annotations

from collections import Counter

import pytest
from parley._generated import peer_service_pb2 as peer_pb
from parley.coordination.move import RoomPlacement, plan_moves, superseded
from parley.room.codec import entry_to_pb
from parley.room.engine import RoomEngine
from parley.room.entries import EntryKind, LogEntry
from parley.room.memory_store import MemoryLogStore
from parley.room.replica import Role, RoomReplica
from sim import OWNER, Cluster, InvariantViolation, SimNode, run_for, run_seed, settle, start

OLD = ["a", "b", "c"]
NEW = ["d", "e", "c"]


def five(rooms: dict[str, list[str]] | None = None) -> Cluster:
    return Cluster(list("abcde"), rooms or {"r0": list(OLD)})


def serving(c: Cluster, room: str = "r0") -> str | None:
    for node in c.administrators(room):
        if c.replica(node, room).serving:
            return node
    return None


def publish(c: Cluster, room: str, cid: str) -> None:
    admin = serving(c, room)
    if admin is not None:
        c.publish(admin, room, "alice", cid, cid)


def finish(c: Cluster, room: str = "r0", ms: int = 20_000) -> list[str]:
    """Run (ticks, deliveries, reconciling stale copies) until the room is
    served, not moving, on exactly its group, every member up to date."""
    for _ in range(ms // 500):
        run_for(c, 500)
        admin = serving(c, room)
        if admin is None:
            continue
        rep = c.replica(admin, room)
        if rep.move is not None or rep.tip.joining:
            continue
        c.reconcile(room)
        run_for(c, 100)
        group = sorted(rep.replicas)
        if c.holders(room) == group and all(
            c.replica(n, room).commit_index == rep.last_index for n in group
        ):
            return list(rep.replicas)
    raise AssertionError(f"{room} did not settle: holders {c.holders(room)}")


def _stored(c: Cluster, node: str, room: str = "r0") -> list[object]:
    record = c.nodes[node].store.load().get(room)
    return list(record.entries) if record is not None else []


def committed_texts(c: Cluster, room: str = "r0") -> list[str]:
    log = c.checker.committed[room]
    return [e.text for e in log if e.kind is EntryKind.MESSAGE]


def test_a_move_step_by_step() -> None:
    c = five()
    start(c, "a")
    for i in range(5):
        publish(c, "r0", f"m{i}")
    settle(c, "a")
    a = c.replica("a")
    c.move("a", "r0", NEW)
    assert a.learners == {"d", "e"}  # prepare: the new nodes are learners
    assert c.holders("r0") == ["a", "b", "c"]
    c.deliver_where(lambda m: m.dst in "de")  # the whole log, from index 1
    assert c.holders("r0") == list("abcde")
    assert not a.tip.joining
    c.deliver_where(lambda m: m.src in "de")  # their answers: both voted yes
    # joint consensus began: from here both majorities must agree
    assert a.tip.joining == tuple(NEW) and not a.learners
    assert a.groups() == [tuple(OLD), tuple(NEW)]
    c.stabilize()
    # the joint entry committed, so did the move's last entry: the new group alone
    assert a.tip.joining == () and a.tip.replicas == tuple(NEW)
    run_for(c, 1000)
    group = finish(c)
    assert sorted(group) == sorted(NEW)
    assert c.checker.stats["move_committed"] == 1
    # the old administrator handed the room to the new group, which goes on
    # with the same seqs; the old-only nodes dropped their copies
    admin = serving(c)
    assert admin in NEW
    assert "r0" not in c.nodes["a"].replicas and "r0" not in c.nodes["b"].replicas
    assert _stored(c, "a") == []  # a tombstone (the last epoch seen) at most
    publish(c, "r0", "after")
    run_for(c, 500)
    assert committed_texts(c) == [f"m{i}" for i in range(5)] + ["after"]
    seqs = [e.seq for e in c.checker.committed["r0"] if e.visible]
    assert seqs == list(range(len(seqs)))
    kinds = [e.kind for e in c.checker.committed["r0"]]
    assert EntryKind.MOVE_JOINT in kinds and EntryKind.MOVE_DONE in kinds


def test_a_learner_that_never_catches_up_aborts_the_move() -> None:
    c = five()
    start(c, "a")
    publish(c, "r0", "m0")
    settle(c, "a")
    c.isolate("d")
    c.move("a", "r0", NEW)
    assert c.replica("a").move is not None
    run_for(c, 16_000)  # past the prepare deadline
    a = c.replica("a")
    assert a.move is None and not a.tip.joining
    assert c.checker.stats["move_aborted"] == 1
    assert sorted(a.replicas) == sorted(OLD)
    publish(c, "r0", "m1")  # the room never stopped
    c.heal()
    assert sorted(finish(c)) == sorted(OLD)  # e's copy is dropped as stale
    assert committed_texts(c) == ["m0", "m1"]


@pytest.mark.parametrize("victim", ["a", "d", "c", "b"])
def test_a_crash_at_every_step_of_a_move_is_all_or_nothing(victim: str) -> None:
    """a coordinates, d joins, c is in both groups, b leaves: each crashes at
    its k-th Ready-loop step for every k the move reaches. The room ends on
    exactly one group (old or new), with every acknowledged message."""
    outcomes: Counter[str] = Counter()
    k = 0
    while True:
        k += 1
        crashed, group = _move_crashing(victim, k)
        outcomes["new" if sorted(group) == sorted(NEW) else "old"] += 1
        if not crashed:
            break  # the move no longer reaches step k of the victim
        assert k < 400
    assert k > 5, "the victim took part in the move"
    assert outcomes["new"] >= 1


class _CrashAt:
    """A crash point: the victim's k-th Ready-loop step, while armed."""

    def __init__(self, victim: str, k: int) -> None:
        self.victim, self.k, self.steps, self.armed = victim, k, 0, True

    def __call__(self, node: SimNode, where: str) -> bool:
        if not self.armed or node.id != self.victim:
            return False
        self.steps += 1
        return self.steps == self.k


def _move_crashing(victim: str, k: int) -> tuple[bool, list[str]]:
    """Move r0 from OLD to NEW with the victim crashing at its k-th step;
    check the outcome. Returns whether it crashed, and the final group."""
    c = five()
    start(c, "a")
    for i in range(3):
        publish(c, "r0", f"m{i}")
    settle(c, "a")
    crash = _CrashAt(victim, k)
    c.crash_point = crash
    c.move("a", "r0", NEW)
    c.stabilize()
    run_for(c, 3000)
    crash.armed = False
    crashed = c.nodes[victim].crashed
    c.restart(victim)
    publish(c, "r0", "after")
    group = finish(c)
    assert sorted(group) in (sorted(OLD), sorted(NEW))
    texts = committed_texts(c)
    assert texts[:3] == ["m0", "m1", "m2"], (k, texts)
    committed = c.checker.committed["r0"]
    for node in group:
        held = c.nodes[node].store.entries("r0", 0, len(committed), len(committed))
        assert held == committed
        rep = c.replica(node)
        assert rep.log[: rep.commit_index - rep.offset] == committed[rep.offset :]
    return crashed, group


def test_concurrent_moves_of_different_rooms() -> None:
    rooms = {"r0": list(OLD), "r1": ["b", "c", "d"], "r2": ["c", "d", "e"]}
    c = five(rooms)
    start(c, "a", "r0")
    start(c, "b", "r1")
    start(c, "c", "r2")
    for room in rooms:
        publish(c, room, f"{room}-m")
    targets = {"r0": ["e", "d", "a"], "r1": ["a", "e", "b"], "r2": ["b", "a", "c"]}
    for room, target in targets.items():
        admin = serving(c, room)
        assert admin is not None
        c.move(admin, room, target)
        assert c.replica(admin, room).move is not None
    c.stabilize()
    c.crash("c")  # in the middle of all three
    run_for(c, 2000)
    c.restart("c")
    for room, target in targets.items():
        assert sorted(finish(c, room)) == sorted(target)
        assert committed_texts(c, room) == [f"{room}-m"]


def test_two_creates_racing_commit_one_room() -> None:
    """Two nodes found the same name at once (each believes it is first):
    incarnations keep them apart, one create commits, the other copy is
    refused everywhere and dropped; nobody mixes the two logs."""
    c = five({"r0": list(OLD)})
    c.checker.check_durable_sends = True
    first = c.nodes["a"].engine
    second = c.nodes["b"].engine
    assert first is not None and second is not None
    first.found("r0", list(OLD), OWNER, "inc-a", c.now)
    second.found("r0", ["b", "a", "c"], OWNER, "inc-b", c.now)
    c.release_writes("a")
    c.release_writes("b")
    c.stabilize()
    run_for(c, 2000)
    winners = [n for n in OLD if c.replica(n).serving]
    assert len(winners) == 1, winners
    incarnation = c.replica(winners[0]).incarnation
    c.reconcile("r0")
    run_for(c, 2000)
    for node in OLD:
        rep = c.replica(node)
        assert rep.incarnation == incarnation
        assert rep.commit_index >= 1


def test_planner_paces_moves_and_waits_for_targets() -> None:
    rooms = [RoomPlacement(f"r{i}", ("a", "b", "c"), True, False) for i in range(10)]
    rooms.append(RoomPlacement("busy", ("a", "b", "c"), True, True))
    plans = plan_moves(rooms, lambda _r: ["d", "b", "c"], {"a", "b", "c", "d"}, 4)
    assert len(plans) == 3  # 4 at once, one already under way
    assert plan_moves(rooms, lambda _r: ["e", "b", "c"], {"a", "b", "c", "d"}, 4) == []
    assert plan_moves(rooms, lambda _r: ["c", "a", "b"], {"a", "b", "c"}, 4) == []


def test_only_a_serving_administrator_with_a_committed_group_supersedes() -> None:
    common = {"their_incarnation": "x", "joining": (), "learners": ()}
    assert superseded("d", "x", serving=True, committed=True, replicas=("a", "b", "c"), **common)
    assert not superseded("a", "x", serving=True, committed=True, replicas=("a", "b"), **common)
    assert not superseded("d", "x", serving=False, committed=True, replicas=("a",), **common)
    assert not superseded("d", "x", serving=True, committed=False, replicas=("a",), **common)
    assert superseded(
        "a", "old", serving=True, committed=True, replicas=("a",), **common
    )  # another incarnation


@pytest.mark.parametrize("seed", range(16))
def test_random_moves_under_faults(seed: int) -> None:
    """Five nodes, three rooms of three replicas, moves among the faults."""
    run_seed(50_000 + seed, 5, 3000, replication=3, rooms=3, moves=6)


def test_random_moves_do_commit_and_abort() -> None:
    stats: Counter[str] = Counter()
    for seed in range(24):
        sim = run_seed(51_000 + seed, 5, 3000, replication=3, rooms=3, moves=6)
        stats.update(sim.cluster.checker.stats)
    assert stats["move_committed"] >= 5 and stats["move_aborted"] >= 1
    assert stats["dropped"] >= 5


def test_the_checks_notice_a_move_that_skips_joint_consensus(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Planted bug: during a move only the new group's majority counts. Some
    seed lets the old group and the new one each commit on their own."""

    def new_group_only(self: RoomReplica) -> list[tuple[str, ...]]:
        old = self.tip.replicas or self._initial
        return [self.tip.joining] if self.tip.joining else [old]

    monkeypatch.setattr(RoomReplica, "groups", new_group_only)
    # (the checker, or a replica's own guard against truncating a committed
    # entry, whichever the seed that finds it trips first)
    with pytest.raises((InvariantViolation, AssertionError)):
        # rare by chance (2 seeds in 200 when measured): the scripted
        # test_a_move_cut_off_from_the_old_group shows it every time
        for seed in range(200):
            run_seed(52_000 + seed, 5, 3000, replication=3, rooms=3, moves=8)


def _skip_joint(monkeypatch: pytest.MonkeyPatch) -> None:
    """Planted bug: the coordinator switches straight to the new group (its
    MOVE_DONE without MOVE_JOINT), so no phase needs both majorities."""
    real = RoomReplica.drive_move

    def hasty(self: RoomReplica, now_ms: int) -> None:
        move = self.move
        if (
            self.role is Role.ADMINISTRATOR
            and move is not None
            and not move.joint_proposed
            and not any(self.match_index.get(p, 0) < self.commit_index for p in move.learners)
        ):
            move.joint_proposed = move.done_proposed = True
            self.propose(EntryKind.MOVE_DONE, self.self_id, ",".join(move.target), "", now_ms)
            return
        real(self, now_ms)

    monkeypatch.setattr(RoomReplica, "drive_move", hasty)


@pytest.mark.parametrize("planted", [False, True])
def test_a_move_cut_off_from_the_old_group(planted: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The coordinator a reaches only the new nodes d and e once the move
    starts; b and c, cut off from it, elect b in the old group. With joint
    consensus nothing a appended after that can commit without b or c, and b's
    reign is safe. With the planted bug (straight to the new group), d and e
    commit the new group's entry while b and c commit another at the same
    index: two groups accepting writes for one room, which the checker catches."""
    if planted:
        _skip_joint(monkeypatch)
    c = five()
    start(c, "a")
    publish(c, "r0", "m0")
    settle(c, "a")
    c.move("a", "r0", NEW)
    c.blocked |= {("a", "b"), ("a", "c"), ("b", "a"), ("c", "a")}
    c.deliver_where(lambda m: m.dst in "de")
    c.deliver_where(lambda m: m.src in "de")
    c.drop(lambda m: m.dst in "bc" or m.src in "bc")

    def split() -> None:
        c.stabilize()
        c.heartbeat("a")
        c.stabilize()
        c.advance(5000)
        c.campaign("b")
        c.stabilize()
        c.publish("b", "r0", "alice", "m1", "m1")  # the old group's new reign
        c.stabilize()

    if planted:
        with pytest.raises(InvariantViolation, match="committed"):
            split()
        return
    split()
    assert c.replica("b").serving and sorted(c.replica("b").replicas) == sorted(OLD)
    c.heal()
    group = finish(c)
    assert sorted(group) in (sorted(OLD), sorted(NEW))
    assert committed_texts(c)[:2] == ["m0", "m1"]


def test_a_deleted_room_leaves_every_replica_and_can_be_founded_again() -> None:
    c = Cluster(list("abc"), {"r0": list(OLD)})
    start(c, "a")
    publish(c, "r0", "m0")
    settle(c, "a")
    first = c.replica("a").incarnation
    c.publish("a", "r0", OWNER, "bye")  # a message, then the owner deletes
    c.stabilize()
    assert c.nodes["a"].engine is not None
    c._input(c.nodes["a"], lambda e: e.propose("r0", EntryKind.DELETE, OWNER, "", "", c.now))
    run_for(c, 1000)
    assert c.holders("r0") == []  # administrator and followers alike
    assert all(_stored(c, n) == [] for n in "abc")
    assert not c.inflight  # nobody keeps replicating it (or re-creating it)
    # the name is free: a create founds a new room, another incarnation
    assert c.found("b", "r0") is not None
    c.stabilize()
    settle(c, "b")
    assert c.replica("b").incarnation != first
    assert sorted(c.holders("r0")) == list("abc")


def test_a_remade_copy_takes_no_part_in_elections_until_it_holds_its_group() -> None:
    """n1 left r1 (and dropped it); brought back as a learner, it replays the
    log from index 1, whose create entry names the old group [n1, n2, n3].
    Until it holds the group entry current when it was remade, it must not
    vote: a lagging n3 could otherwise win that old group with n1's vote and
    overwrite committed entries (found by the simulation, seed 51020, before
    this rule). The rule survives a restart."""
    store = MemoryLogStore()
    engine = RoomEngine("n1")
    create = LogEntry(1, 1, EntryKind.CREATE, 0, "owner", "n1,n2,n3", 0, "inc")
    msgs = [LogEntry(i, 1, EntryKind.MESSAGE, i - 1, "u", "x", i, f"m{i}") for i in range(2, 5)]
    append = peer_pb.RoomAppend(
        room="r1",
        epoch=2,
        prev_index=0,
        entries=[entry_to_pb(e) for e in [create, *msgs]],
        incarnation="inc",
        members=["n3", "n2", "n0", "n1", "n4"],
        config_index=15,
    )
    engine.step_append("n2", append, 1, 0)
    vote = peer_pb.RoomVote(room="r1", epoch=4, last_index=12, last_epoch=1, incarnation="inc")
    engine.step_vote("n3", vote, 2, 10_000)
    ready = engine.ready(10_000)
    store.write(ready.writes)
    engine.advance(ready)
    (granted,) = [m.body.granted for m in ready.messages if m.reply_to == 2]
    assert not granted and not engine.rooms["r1"].electable

    restarted = RoomEngine("n1")
    restarted.restore("r1", ["n1"], store.load()["r1"], 20_000)
    assert restarted.rooms["r1"].config_floor == 15 and not restarted.rooms["r1"].electable
    restarted.step_vote("n3", vote, 3, 20_000)
    (answer,) = restarted.ready(20_000).messages
    assert isinstance(answer.body, peer_pb.RoomVoteResult) and not answer.body.granted
