"""Leadership transfer, read-index and pre-vote, each on a scripted cluster.

One scenario per finding of the engine review, and for each a planted bug
(the mechanism switched off) that the same scenario catches, so that the
scenario is shown to test what it says.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from parley.room.replica import ReadAnswer, Role, RoomReplica, Timing
from sim import Cluster, one_room, run_for, settle, start

ROOM = "r0"


def reads(c: Cluster) -> dict[tuple[str, int], list[int | None]]:
    """Collect every read answer as (node, token) -> indexes."""
    got: dict[tuple[str, int], list[int | None]] = {}

    def on_read(node: str, _room: str, answer: ReadAnswer) -> None:
        got.setdefault((node, answer.token), []).append(answer.index)

    c.on_read = on_read
    return got


# ------------------------------------------------------------------ drain


def lagging_successor() -> Cluster:
    """a administers; its last entry reached c but not b (the next in line)."""
    c = one_room()
    start(c, "a")
    c.blocked.add(("a", "b"))
    assert c.publish("a", ROOM, "u", "m1", "m1") is not None
    c.stabilize()  # c's answer commits m1; every append to b is lost
    assert c.replica("a").commit_index == c.replica("c").last_index > c.replica("b").last_index
    c.down = {"b": {"a"}, "c": {"a"}}  # a went NOT_SERVING: the detectors see it down
    return c


def test_drain_hands_the_room_to_the_up_to_date_replica_at_once() -> None:
    """A draining administrator hands over to c, which holds its whole log,
    without any timer running out; the room never goes back to it."""
    c = lagging_successor()
    c.drain("a")
    c.heal()
    assert c.replica("a").transfer_target == "c"
    assert c.publish("a", ROOM, "u", "m2", "m2") is None  # it takes no more requests
    c.stabilize()  # no clock moves: transfer append, campaign, votes, epoch entry
    settle(c, "c")
    assert c.replica("c").serving and c.replica("c").epoch == 2
    assert c.replica("a").role is Role.FOLLOWER
    run_for(c, 20_000)  # b's detector keeps saying a is down; a never campaigns
    assert c.administrators() == ["c"] and c.replica("c").epoch == 2
    assert all(admin != "a" for (_, epoch), admin in c.checker.admins.items() if epoch > 1)
    assert c.publish("c", ROOM, "u", "m2", "m2") is not None
    settle(c, "c")  # (followers learn a commit with the next append or tick)
    c.checker.final(c)


def test_without_transfer_the_same_drain_waits_for_timers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Planted bug: a drain that only steps down leaves the room without an
    administrator until a timer runs out (b, next in line, is refused)."""
    monkeypatch.setattr(RoomReplica, "transfer", lambda self, now, up: self.step_down(now) or "")
    c = lagging_successor()
    c.drain("a")
    c.heal()
    c.stabilize()
    assert not any(c.replica(n).serving for n in "abc")


# ------------------------------------------------------------------ reads


def partitioned_reads() -> tuple[Cluster, dict[tuple[str, int], list[int | None]], int]:
    c = one_room()
    start(c, "a")
    got = reads(c)
    c.isolate("a")
    token = c.read("a")
    c.stabilize()  # its heartbeats are lost
    run_for(c, Timing().election_min_ms + 1000)  # b or c takes over meanwhile
    return c, got, token


def test_a_partitioned_administrator_serves_no_read() -> None:
    """Cut off from its majority, the old administrator never confirms a read;
    it refuses it once it steps down. The new one serves reads at once."""
    c, got, token = partitioned_reads()
    (new,) = [n for n in "bc" if c.replica(n).serving]
    entry = c.publish(new, ROOM, "u", "after", "after")
    assert entry is not None
    c.stabilize()
    assert got.get(("a", token)) is None  # not answered: a still believes it leads
    run_for(c, Timing().election_max_ms)
    assert c.replica("a").role is Role.FOLLOWER
    assert got[("a", token)] == [None]  # refused, never served
    fresh = c.read(new)
    c.stabilize()
    (index,) = got[(new, fresh)]
    assert index is not None and index >= entry.index


def test_without_read_index_the_partitioned_administrator_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Planted bug: reads served on the administrator's word alone are answered
    by the cut-off old administrator, after a successor was elected."""
    monkeypatch.setattr(RoomReplica, "_confirm_reads", _confirm_at_once)
    c, got, token = partitioned_reads()
    assert any(c.replica(n).serving for n in "bc")
    assert got[("a", token)] != [None]


def _confirm_at_once(self: RoomReplica) -> None:
    self._read_answers += tuple(ReadAnswer(read.token, read.index) for read in self._reads)
    self._reads = ()


# -------------------------------------------------------------- pre-vote


def healed_link() -> Iterator[Cluster]:
    c = one_room()
    start(c, "a")
    c.isolate("c")
    run_for(c, 10_000)
    c.heal()
    run_for(c, 10_000)
    yield c


def test_a_healed_link_causes_no_election() -> None:
    """c, cut off for longer than any election timeout, comes back: a stays
    administrator of epoch 1 and c follows it."""
    (c,) = healed_link()
    assert c.administrators() == ["a"]
    assert [c.replica(n).epoch for n in "abc"] == [1, 1, 1]
    assert c.replica("c").role is Role.FOLLOWER
    assert c.replica("c").last_index == c.replica("a").last_index


def test_without_pre_vote_a_healed_link_deposes_the_administrator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Planted bug: campaigning straight away raises the epoch on healing."""
    monkeypatch.setattr(RoomReplica, "pre_vote", lambda self, now: self.campaign(now) and None)
    (c,) = healed_link()
    assert max(c.replica(n).epoch for n in "abc") > 1
