"""Focused protocol rules of RoomReplica, each shown on a small scripted cluster.

Where `test_replica_scenarios.py` tells the classic stories, these pin down
single rules the randomized simulation only reaches now and then: duplicated
and late appends, a follower's divergent tail, what a write to the store
contains, and how elections behave when failure detectors disagree.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from parley.room.entries import EntryKind
from parley.room.replica import Role, RoomReplica, Timing
from sim import APPEND, OWNER, Cluster, SimNode, run_for, whole_log

ROOM = "r0"
QUIET_MS = 3000
TICK_MS = 50


def make(nodes: str = "abc", timing: Timing | None = None) -> Cluster:
    """A cluster of one-letter nodes holding one room, in that placement order."""
    names = list(nodes)
    return Cluster(names, {ROOM: names}, timing)


def settle(c: Cluster, admin: str) -> None:
    """Two heartbeat rounds: followers catch up and learn the commit index."""
    for _ in range(2):
        c.heartbeat(admin, ROOM)
        c.stabilize()


def start(c: Cluster, admin: str) -> None:
    """Elect admin and create the room, committed everywhere."""
    c.campaign(admin, ROOM)
    c.stabilize()
    assert c.replica(admin).serving
    assert c.publish(admin, ROOM, OWNER, "create") is not None
    settle(c, admin)


def ids(c: Cluster, node: str) -> list[str]:
    """Client ids of the messages in a node's log."""
    return [e.client_msg_id for e in whole_log(c, node) if e.kind is EntryKind.MESSAGE]


def test_duplicate_append_keeps_later_entries() -> None:
    """An append delivered again after later ones truncates nothing that matches."""
    c = make()
    start(c, "a")
    c.publish("a", ROOM, "u", "m1", "m1")
    first = next(m for m in c.inflight if m.kind == APPEND and m.dst == "b")
    c.stabilize()
    c.publish("a", ROOM, "u", "m2", "m2")
    c.stabilize()
    assert ids(c, "b") == ["m1", "m2"]
    before = c.nodes["b"].store.load()[ROOM].entries
    c.deliver(replace(first))  # the network delivers the old copy again
    c.stabilize()
    assert ids(c, "b") == ["m1", "m2"]
    assert c.nodes["b"].store.load()[ROOM].entries == before


def test_late_append_from_a_deposed_administrator_is_refused() -> None:
    """An append of epoch 1 arriving after epoch 2 began changes nothing."""
    c = make()
    start(c, "a")
    c.publish("a", ROOM, "u", "old", "old")
    late = [m for m in c.inflight if m.kind == APPEND]
    c.inflight.clear()
    c.advance(QUIET_MS)
    c.campaign("b")
    c.stabilize()
    assert c.replica("b").serving and c.replica("b").epoch == 2
    for msg in late:
        c.deliver(msg)
    c.stabilize()
    assert "old" not in ids(c, "b") and "old" not in ids(c, "c")
    assert c.replica("a").role is Role.FOLLOWER and c.replica("a").epoch == 2
    settle(c, "b")
    c.checker.final(c)


def test_follower_does_not_commit_its_divergent_tail() -> None:
    """A follower commits only up to what it has shown to match, not its stale tail."""
    c = make("abcde", Timing(max_batch_entries=1))
    start(c, "a")  # indexes 1 (epoch entry) and 2 (create) everywhere
    c.publish("a", ROOM, "u", "x1", "x1")  # index 3: reaches b and c only
    c.deliver_where(lambda m: m.kind == APPEND and m.dst in "bc")
    c.inflight.clear()
    c.publish("a", ROOM, "u", "x2", "x2")  # index 4: reaches b only
    c.deliver_where(lambda m: m.kind == APPEND and m.dst == "b")
    c.inflight.clear()
    c.crash("a")
    assert ids(c, "b") == ["x1", "x2"] and ids(c, "c") == ["x1"]

    # c wins epoch 2 with d and e; b, whose log is longer, is cut off meanwhile
    c.blocked |= {("c", "b"), ("b", "c")}
    c.advance(QUIET_MS)
    c.campaign("c")
    c.stabilize()
    settle(c, "c")
    leader = c.replica("c")
    assert leader.serving and leader.commit_index == 4  # x1 at 3, epoch 2 entry at 4
    assert c.replica("b").entry(4).client_msg_id == "x2"

    # b hears from c again: entry 3 matches, so b may commit 3 but not its own
    # entry 4 (x2 of epoch 1), though c's commit index is 4
    c.heal()
    c.heartbeat("c")
    c.stabilize()  # the checker fails at once if b ever commits x2
    settle(c, "c")
    assert ids(c, "b") == ["x1"]
    c.restart("a")
    settle(c, "c")
    c.checker.final(c)


def test_conflicting_tail_is_replaced_in_one_write(monkeypatch: pytest.MonkeyPatch) -> None:
    """A follower's stale entries are cut and replaced in one store write."""
    c = make()
    start(c, "a")
    c.isolate("a")
    c.publish("a", ROOM, "u", "stale1", "stale1")
    c.publish("a", ROOM, "u", "stale2", "stale2")
    c.stabilize()
    c.advance(QUIET_MS)
    c.campaign("b")
    c.stabilize()
    c.publish("b", ROOM, "u", "new", "new")
    c.stabilize()
    c.heal()
    c.heartbeat("a")  # a learns of epoch 2 and steps down
    c.stabilize()
    rep = c.replica("a")
    assert ids(c, "a") == ["stale1", "stale2"]
    writes = []
    real = RoomReplica.take_write

    def spy(self: RoomReplica) -> object:
        write = real(self)
        if write is not None and self is rep:
            writes.append(write)
        return write

    monkeypatch.setattr(RoomReplica, "take_write", spy)
    settle(c, "b")
    assert ids(c, "a") == ["new"]
    cut = [w for w in writes if w.truncate_from is not None]
    assert len(cut) == 1 and cut[0].truncate_from == 3
    assert [e.index for e in cut[0].entries][:1] == [3]
    assert [e for e in c.nodes["a"].store.load()[ROOM].entries if e.index > rep.offset] == rep.log
    c.checker.final(c)


def test_lost_append_is_sent_again() -> None:
    """When an append RPC fails, the administrator resends its entries."""
    c = make()
    start(c, "a")
    c.publish("a", ROOM, "u", "m1", "m1")
    lost = c.drop(lambda m: m.kind == APPEND)
    assert [m.dst for m in lost] == ["b", "c"]
    assert ids(c, "b") == []
    c.fail_append(lost[0])
    c.stabilize()
    assert ids(c, "b") == ["m1"]


def test_vote_request_from_a_stale_candidate_does_not_bump_a_live_group() -> None:
    """Followers of a live administrator refuse a vote and keep their epoch."""
    c = make()
    start(c, "a")
    c.isolate("c")
    c.publish("a", ROOM, "u", "m1", "m1")
    c.stabilize()
    c.heal()
    c.campaign("c")  # c missed m1 and thinks a is gone
    c.stabilize()
    assert c.replica("b").epoch == 1
    assert c.replica("a").epoch == 1
    assert c.replica("c").role is Role.CANDIDATE


def test_wrong_failure_detector_does_not_depose_a_live_administrator() -> None:
    """A detector wrongly reporting a live administrator down causes no election churn."""
    c = make()
    start(c, "a")
    c.down["b"] = {"a"}  # b's health watch on a is broken; the links are fine
    epoch = c.replica("a").epoch
    run_for(c, 30_000)
    admins = [n for n in "abc" if c.replica(n).role is Role.ADMINISTRATOR]
    assert len(admins) == 1
    # one election at most (b may take over); not one every few seconds
    assert c.replica(admins[0]).epoch <= epoch + 1, c.checker.admins


def test_administrator_cut_off_from_a_majority_steps_down() -> None:
    """An administrator that hears no majority for election_max_ms stops claiming the room."""
    c = make()
    start(c, "a")
    c.isolate("a")
    run_for(c, Timing().election_max_ms + 500)
    assert c.replica("a").role is Role.FOLLOWER
    assert c.publish("a", ROOM, "u", "late", "late") is None
    new = [n for n in "bc" if c.replica(n).serving]
    assert len(new) == 1  # the majority side elected one meanwhile


def test_crash_before_the_write_loses_the_step_and_its_answer() -> None:
    """A follower dying before it persists an append neither answers nor keeps it."""
    c = make()
    start(c, "a")
    c.publish("a", ROOM, "u", "m1", "m1")
    armed = {"b"}

    def crash_once(node: SimNode, where: str) -> bool:
        if node.id in armed and where == "step":
            armed.discard(node.id)
            return True
        return False

    c.crash_point = crash_once
    c.deliver_where(lambda m: m.kind == APPEND and m.dst == "b")
    assert c.nodes["b"].crashed
    assert not [m for m in c.inflight if m.src == "b"]
    c.restart("b")
    assert ids(c, "b") == []  # the append never reached b's disk
    c.stabilize()  # c's answer commits m1 with a
    settle(c, "a")
    assert ids(c, "b") == ["m1"]
    c.checker.final(c)
