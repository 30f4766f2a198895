"""The de-duplication window: by count and by the room's own clock, the same on every replica."""

from __future__ import annotations

import pytest
from parley.room.entries import EntryKind, LogEntry
from parley.room.replica import Timing
from parley.room.rules import check_publish
from parley.room.state import DedupeWindow, RoomState
from sim import Cluster, InvariantViolation, settle, start


def _log(count: int, step_ms: int) -> list[LogEntry]:
    entries = [LogEntry(1, 1, EntryKind.CREATE, 0, "alice", "a,b,c", 0, "inc")]
    for i in range(1, count + 1):
        entries.append(LogEntry(i + 1, 1, EntryKind.MESSAGE, i, "alice", "x", i * step_ms, f"m{i}"))
    return entries


def test_a_retry_within_the_window_gets_its_seq() -> None:
    state = RoomState.from_entries(_log(10, 1000), DedupeWindow(count=100, ms=60_000))
    assert check_publish(state, "r", "alice", "x", "m3") == 3
    assert check_publish(state, "r", "alice", "x", "m99") is None


def test_the_window_ends_by_count() -> None:
    state = RoomState.from_entries(_log(10, 1), DedupeWindow(count=4, ms=60_000))
    assert [state.original("alice", f"m{i}") for i in (6, 7, 10)] == [None, 7, 10]


def test_the_window_ends_by_the_rooms_clock() -> None:
    # a message a minute: with a 5 minute window, the last five are remembered
    state = RoomState.from_entries(_log(10, 60_000), DedupeWindow(count=100, ms=300_000))
    assert state.original("alice", "m4") is None
    assert state.original("alice", "m5") == 5
    assert state.original("alice", "m10") == 10


def test_every_replica_and_every_restart_forgets_the_same_ids() -> None:
    window = DedupeWindow(count=7, ms=200_000)
    log = _log(40, 30_000)
    one, two = RoomState.from_entries(log, window), RoomState.from_entries(log[:25], window)
    for entry in log[25:]:
        two.apply(entry)  # a follower applying as entries arrive
    assert one.dedupe == two.dedupe


def test_a_retry_after_the_window_is_a_new_message() -> None:
    """On the production engine: an id retried within the window is answered
    from the log after a failover; retried after it, it is stored again."""
    c = Cluster(list("abc"), {"r0": ["a", "b", "c"]}, Timing(dedupe=DedupeWindow(100, 10_000)))
    c.checker.dedupe_window_ms = 10_000
    start(c, "a")
    first = c.publish("a", "r0", "alice", "m1", "hello")
    assert first is not None
    c.stabilize()
    settle(c, "a")
    c.crash("a")
    c.advance(3000)
    c.campaign("b")
    c.stabilize()
    again = c.publish("b", "r0", "alice", "m1", "hello")
    assert again is not None and again.seq == first.seq  # within 10 s: the same
    c.stabilize()
    c.advance(20_000)
    c.publish("b", "r0", "alice", "m2", "later")  # moves the room's clock on
    c.stabilize()
    late = c.publish("b", "r0", "alice", "m1", "hello")
    assert late is not None and late.seq > first.seq  # outside it: stored again
    c.stabilize()
    assert c.checker.acked[-1][1] == late  # committed, and the checker agrees


def test_the_checker_notices_a_window_too_short() -> None:
    """Planted: engines forgetting ids after 1 s while the checker allows 10 s."""
    c = Cluster(list("abc"), {"r0": ["a", "b", "c"]}, Timing(dedupe=DedupeWindow(100, 1_000)))
    c.checker.dedupe_window_ms = 10_000
    start(c, "a")
    c.publish("a", "r0", "alice", "m1", "hello")
    c.stabilize()
    c.advance(5_000)
    c.publish("a", "r0", "alice", "m2", "later")
    c.stabilize()
    c.publish("a", "r0", "alice", "m1", "hello")
    with pytest.raises(InvariantViolation, match="committed twice"):
        c.stabilize()
