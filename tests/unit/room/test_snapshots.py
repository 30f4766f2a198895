"""Bounded memory: log compaction, stored snapshots and InstallSnapshot.

A replica keeps about `log_tail` committed entries in memory and folds the
rest into its state at `offset`; every `snapshot_every` entries that state
is stored, so a restart reads the snapshot and what follows it. A follower
that needs entries the administrator has folded gets the snapshot instead,
with the committed history it lacks staged ahead of it. The scripted tests
show each path; the randomized ones (tiny tails, every fault) show they
stay safe, and that the checks catch planted bugs in them.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import replace

import pytest
from parley.room.entries import EntryKind
from parley.room.memory_store import MemoryLogStore
from parley.room.replica import LAGGING_FOLLOWER_TAILS, RoomReplica, Timing
from parley.room.state import RoomState
from sim import (
    APPEND,
    OWNER,
    SNAPSHOT,
    Cluster,
    InvariantViolation,
    Msg,
    one_room,
    run_for,
    run_seed,
    settle,
    start,
)

TIMING = Timing(log_tail=4, snapshot_every=8)


def record_sent(c: Cluster, to: str) -> list[Msg]:
    """Every append and snapshot sent to a node from now on."""
    sent: list[Msg] = []
    schedule = c.schedule

    def keep(msg: Msg) -> None:
        if msg.dst == to and msg.kind in (APPEND, SNAPSHOT):
            sent.append(msg)
        schedule(msg)

    c.schedule = keep  # type: ignore[method-assign]
    return sent


def publish(c: Cluster, admin: str, count: int, first: int = 0) -> None:
    for i in range(first, first + count):
        assert c.publish(admin, "r0", "u", f"m{i}", f"hello {i}") is not None
        c.stabilize()


def test_memory_holds_a_bounded_tail_and_the_store_everything() -> None:
    """100 messages: each replica holds at most 2 x log_tail entries, its
    state at the offset is the log's, and the store keeps every entry."""
    c = one_room(timing=TIMING)
    start(c, "a")
    publish(c, "a", 100)
    settle(c, "a")
    committed = c.checker.committed["r0"]
    for node in "abc":
        rep = c.replica(node)
        assert rep.commit_index == len(committed) == 101
        assert len(rep.log) <= 2 * TIMING.log_tail
        assert rep.offset >= rep.commit_index - 2 * TIMING.log_tail
        assert rep.base.last_seq == committed[rep.offset - 1].seq
        stored = c.nodes[node].store
        assert stored.entries("r0", 0, 200, 200) == committed
        record = stored.load()["r0"]
        assert record.snapshot is not None
        assert record.snapshot.index <= rep.offset
        # only the entries after the snapshot are loaded at a restart
        assert len(record.entries) < TIMING.snapshot_every + 2 * TIMING.log_tail + 1
    # one per snapshot_every entries folded; a follower folds only what it
    # knows committed, which the next append or tick tells it
    assert c.checker.stats["snapshots_stored"] >= 3 * (100 // TIMING.snapshot_every) - 6


def test_a_restart_resumes_from_the_snapshot_and_keeps_the_dedupe_window() -> None:
    """A restarted administrator loads the snapshot plus the entries after it,
    serves again, and still answers a retry of an old message with its seq."""
    c = one_room(timing=TIMING)
    start(c, "a")
    publish(c, "a", 40)
    first = c.checker.committed["r0"][1]
    c.crash("a")
    c.restart("a")
    rep = c.replica("a")
    assert rep.offset > 0 and rep.last_index == 41
    assert rep.tip.original("u", "m0") == first.seq
    c.crash("b")
    c.crash("c")
    c.restart("b")
    c.restart("c")
    run_for(c, 6000)
    admin = next(n for n in "abc" if c.replica(n).serving)
    # a retry of the first message, long compacted: the original seq, no new entry
    again = c.publish(admin, "r0", "u", "m0", "hello 0")
    assert again is not None and again.seq == first.seq
    assert c.replica(admin).tip.last_seq == 40  # no second entry for it


def test_a_follower_far_behind_gets_a_snapshot_and_the_history_it_lacks() -> None:
    """A follower cut off while 60 entries commit is sent the snapshot (not
    the entries from where it stopped), and the history between is copied
    into its store in the same transfer."""
    c = one_room(timing=TIMING)
    start(c, "a")
    c.isolate("c")
    publish(c, "a", 60)
    c.heal()
    sent = record_sent(c, "c")
    settle(c, "a")
    # the first append finds c short; the entries it needs are folded
    assert [m.kind for m in sent[:2]] == [APPEND, SNAPSHOT]
    snapshot = sent[1]
    assert snapshot.body.have_index == 1  # c held the create entry
    assert [e.index for e in snapshot.history] == list(range(2, snapshot.body.index + 1))
    assert all(m.body.prev_index >= snapshot.body.index for m in sent[2:])
    rep = c.replica("c")
    committed = c.checker.committed["r0"]
    assert rep.commit_index == len(committed)
    assert c.nodes["c"].store.entries("r0", 0, 100, 100) == committed
    assert c.checker.stats["snapshots_installed"] == 1


def test_a_wiped_follower_is_rebuilt_by_snapshot() -> None:
    """A follower whose store is lost (a deleted PVC) comes back empty; the
    administrator's appends find no copy there and it sends the snapshot,
    history from index 1: no append replays the log from its start."""
    c = one_room(timing=TIMING)
    start(c, "a")
    publish(c, "a", 30)
    c.crash("c")
    node = c.nodes["c"]
    node.store, node.disk, node.disk_hard, node.disk_snap = MemoryLogStore(), {}, {}, {}
    c.restart("c")
    assert "r0" not in node.replicas
    sent = record_sent(c, "c")
    settle(c, "a")
    snapshots = [m for m in sent if m.kind == SNAPSHOT]
    assert len(snapshots) == 1 and snapshots[0].body.have_index == 0
    assert [e.index for e in snapshots[0].history][:1] == [1]
    starts = [m.body.entries[0].index for m in sent if m.kind == APPEND and m.body.entries]
    assert all(s > snapshots[0].body.index for s in starts), "the log was replayed"
    rep = c.replica("c")
    committed = c.checker.committed["r0"]
    assert rep.commit_index == len(committed)
    assert node.store.entries("r0", 0, 100, 100) == committed
    # made from another's log: it votes only once it holds its group's entry
    assert rep.electable


def test_a_snapshot_made_before_a_wipe_is_refused_and_sent_again_whole() -> None:
    """The administrator still believes the follower holds what it
    acknowledged before its disk was lost; the snapshot it sends copies
    history only after that. The wiped copy refuses it (it does not hold
    those entries) and gets one with the whole history."""
    c = one_room(timing=TIMING)
    start(c, "a")
    publish(c, "a", 10)
    c.crash("c")
    publish(c, "a", 60, first=10)  # past what is kept for a live follower behind
    sent = record_sent(c, "c")
    for m in [m for m in c.lost_msgs if m.dst == "c"]:
        c.fail_append(m)  # retried from c's match, which is folded by now
    assert sent and sent[0].kind == SNAPSHOT  # it waits on the network
    node = c.nodes["c"]
    node.store, node.disk, node.disk_hard, node.disk_snap = MemoryLogStore(), {}, {}, {}
    c.restart("c")
    settle(c, "a")
    snapshots = [m for m in sent if m.kind == SNAPSHOT]
    haves = [m.body.have_index for m in snapshots]
    assert haves[0] == 11 and haves[-1] == 0, haves
    committed = c.checker.committed["r0"]
    assert node.store.entries("r0", 0, 100, 100) == committed
    assert c.replica("c").commit_index == len(committed)


def test_a_big_de_duplication_window_makes_snapshots_rarer() -> None:
    """Past `cheap_snapshot_ids` remembered ids, a snapshot is stored once the
    window has turned over (each holds the whole window), not every
    snapshot_every entries; a restart still comes back with every entry."""
    c = one_room(timing=replace(TIMING, cheap_snapshot_ids=20))
    start(c, "a")
    publish(c, "a", 100)
    settle(c, "a")
    # (20 ids and more: one snapshot per 20 to 100 entries, not per 8)
    assert c.checker.stats["snapshots_stored"] <= 3 * (20 // TIMING.snapshot_every + 100 // 20)
    c.crash("b")
    c.restart("b")
    settle(c, "a")
    committed = c.checker.committed["r0"]
    assert c.replica("b").commit_index == len(committed)
    assert c.nodes["b"].store.entries("r0", 0, 200, 200) == committed
    assert c.replica("b").tip.dedupe == c.replica("a").tip.dedupe


def _lose_appends_to(c: Cluster, node: str, count: int, first: int) -> None:
    """Publish `count` messages while the link to `node` is cut (its
    detector not told: a starved core, a blip), then report the lost appends
    to the administrator as timed out and mend the link."""
    c.blocked |= {("a", node), (node, "a")}
    publish(c, "a", count, first)
    for msg in [m for m in c.lost_msgs if m.dst == node]:
        c.fail_append(msg)
    c.lost_msgs.clear()
    c.heal()


def test_a_live_follower_a_little_behind_gets_entries_not_a_snapshot() -> None:
    """A follower the detector sees up whose appends failed for a while is
    sent the entries it lacks, kept in memory for it, while it is less than
    LAGGING_FOLLOWER_TAILS log tails behind; further behind it gets a
    snapshot, so memory stays bounded either way."""
    c = one_room(timing=TIMING)
    bound = LAGGING_FOLLOWER_TAILS * TIMING.log_tail
    start(c, "a")
    publish(c, "a", 10)
    sent = record_sent(c, "c")
    _lose_appends_to(c, "c", 3 * TIMING.log_tail, first=10)
    assert len(c.replica("a").log) <= bound
    settle(c, "a")
    assert sent and {m.kind for m in sent} == {APPEND}
    assert c.replica("c").commit_index == c.replica("a").commit_index

    sent.clear()
    _lose_appends_to(c, "c", 3 * bound, first=100)
    assert len(c.replica("a").log) <= bound
    settle(c, "a")
    assert SNAPSHOT in {m.kind for m in sent}
    assert c.replica("c").commit_index == c.replica("a").commit_index


def test_history_is_read_from_the_store_below_the_tail() -> None:
    """What `history` reads beyond memory: visible committed entries by seq."""
    c = one_room(timing=TIMING)
    start(c, "a")
    publish(c, "a", 30)
    rep = c.replica("a")
    store = c.nodes["a"].store
    page = store.visible_before("r0", 10, rep.offset, 5)
    assert [e.seq for e in page] == [5, 6, 7, 8, 9]
    assert [e.seq for e in store.visible_from("r0", 0, rep.offset, 3)] == [0, 1, 2]
    assert store.visible_from("r0", 0, rep.offset, 1)[0].kind is EntryKind.CREATE
    assert store.visible_from("r0", 0, rep.offset, 1)[0].user == OWNER


def sim_stats(seeds: range, nodes: int, **overrides: object) -> Counter[str]:
    total: Counter[str] = Counter()
    for seed in seeds:
        sim = run_seed(seed, nodes, 2000, **overrides)
        total.update(sim.cluster.checker.stats)
    return total


def test_the_simulation_exercises_snapshots() -> None:
    """Seeds with tiny tails send, install and store snapshots under faults
    (every `Checker` rule holds through them, history included)."""
    stats = sim_stats(range(10_000, 10_012), 5)
    assert stats["snapshots_sent"] >= 10
    assert stats["snapshots_installed"] >= 10
    assert stats["snapshots_stored"] >= 50
    assert stats["history_copied"] >= 50
    assert stats["offsets_checked"] >= 200


def test_the_checks_notice_compaction_past_the_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Folding entries that are durable but not committed (bounded by the
    persisted index alone) is caught: the state at the offset, or what is
    handed out as committed, no longer matches the cluster's log."""

    def eager(self: RoomReplica) -> None:
        tail = self.timing.log_tail
        upto = self.persisted_index - tail  # the planted bug: no commit bound
        if len(self.log) <= 2 * tail or upto <= self.offset:
            return
        folded = upto - self.offset
        for entry in self.log[:folded]:
            self.base.apply(entry)
        self.offset_epoch = self.log[folded - 1].epoch
        del self.log[:folded]
        self.offset = upto

    monkeypatch.setattr(RoomReplica, "compact", eager)
    with pytest.raises((InvariantViolation, AssertionError, IndexError)):
        for seed in range(10_000, 10_030):
            run_seed(seed, 5, 2000)


def test_the_checks_notice_a_transfer_that_skips_history(monkeypatch: pytest.MonkeyPatch) -> None:
    """A snapshot whose history starts one entry later than what the peer is
    known to hold (an off-by-one in `have_index`) leaves a hole in that
    peer's stored history, or, where the peer sees it lacks the entry and
    refuses, never brings it up to date: either fails the run."""
    real = RoomReplica.snapshot_for

    def skips_one(self: RoomReplica, peer: str) -> object:
        snapshot = real(self, peer)
        snapshot.have_index = min(snapshot.have_index + 1, self.offset)
        return snapshot

    monkeypatch.setattr(RoomReplica, "snapshot_for", skips_one)
    with pytest.raises(InvariantViolation):
        for seed in range(10_000, 10_040):
            run_seed(seed, 5, 2000)


@pytest.mark.parametrize("msg_id", ["m1", "ünï-✓", "lone-\ud800"])
def test_a_state_with_any_ids_survives_its_json(msg_id: str) -> None:
    """Snapshots are written with orjson (fast over 100,000 ids), with
    json's encoder for what orjson refuses (a lone surrogate): either way
    the state reads back as it was."""
    state = RoomState(exists=True, owner="ann", members={"ann", "bö"}, reads={"bö": 3})
    state.dedupe = OrderedDict([(("ann", "first"), (1, 1000)), (("bö", msg_id), (2, 2000))])
    again = RoomState.from_json(state.to_json())
    assert again.dedupe == state.dedupe
    assert again.to_json() == state.to_json()
    assert (again.members, again.reads, again.owner) == (state.members, state.reads, "ann")
