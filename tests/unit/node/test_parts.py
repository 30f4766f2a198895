"""The node's small parts, each on its own: commit waiters, the subscriber hub,
presence."""

from __future__ import annotations

import pytest
from parley.node.commit_waiters import CommitWaiters
from parley.node.presence import PresenceBook
from parley.node.subscribers import Subscriber, SubscriberHub
from parley.room.entries import EntryKind, HardState, LogEntry
from parley.room.errors import NotAdministrator, Unavailable
from parley.room.records import RoomRecord
from parley.room.replica import RoomReplica


def replica_with(entries: list[LogEntry], commit: int) -> RoomReplica:
    replica = RoomReplica("r", "a", ["a"], RoomRecord("r", HardState(2, "a"), entries), 0)
    replica.commit_index = commit
    return replica


def entry(index: int, epoch: int, kind: EntryKind = EntryKind.MESSAGE, seq: int = 0) -> LogEntry:
    return LogEntry(index, epoch, kind, seq or index, "u", f"t{index}")


async def test_waiters_resolve_in_order_and_fail_when_replaced() -> None:
    waiters = CommitWaiters()
    replica = replica_with([entry(1, 2), entry(2, 2), entry(3, 2)], 0)
    second = waiters.wait(replica, 2)
    first = waiters.wait(replica, 1)  # older index asked later: still ordered
    third = waiters.wait(replica, 3)
    replica.commit_index = 2
    waiters.committed(replica)
    assert first.result().index == 1 and second.result().index == 2
    assert not third.done()
    # index 3 ends up holding another administrator's entry: the proposal failed
    replica.log[2] = entry(3, 3)
    replica.commit_index = 3
    waiters.committed(replica)
    with pytest.raises(NotAdministrator):
        third.result()


async def test_waiter_for_a_committed_index_resolves_at_once() -> None:
    replica = replica_with([entry(1, 2)], 1)
    assert CommitWaiters().wait(replica, 1).result().index == 1


async def test_failing_a_room_fails_every_waiter() -> None:
    waiters = CommitWaiters()
    replica = replica_with([entry(1, 2)], 0)
    future = waiters.wait(replica, 1)
    waiters.fail("r", NotAdministrator("r", "b"))
    with pytest.raises(NotAdministrator):
        future.result()


async def test_hub_encodes_once_skips_hidden_entries_and_closes_on_delete() -> None:
    hub = SubscriberHub()
    one, two = Subscriber("r", "g1", 0), Subscriber("r", "g2", 2)
    hub.add(one)
    hub.add(two)
    hub.deliver("r", [entry(1, 1, seq=1), entry(2, 1, EntryKind.EPOCH, seq=1), entry(3, 1, seq=2)])
    assert [e.seq for e in one.entries] == [1, 2]
    assert [e.seq for e in two.entries] == [2]  # it asked from seq 2
    assert one.entries[1] is two.entries[0]  # one wire form for both
    hub.deliver("r", [entry(4, 1, EntryKind.DELETE, seq=3)])
    assert one.closed and two.closed


async def test_hub_ends_a_room_and_tracks_gateways() -> None:
    hub = SubscriberHub()
    sub = Subscriber("r", "g1", 0)
    hub.add(sub)
    assert hub.has_gateway("r", "g1") and not hub.has_gateway("r", "g2")
    hub.end_room("r", Unavailable("bye"))
    assert isinstance(sub.ended, Unavailable) and sub.wakeup.is_set()
    assert not hub.has_gateway("r", "g1")


def test_presence_announces_only_changes_of_the_overall_state() -> None:
    said: list[tuple[str, str, bool]] = []
    book = PresenceBook(lambda room, user, online: said.append((room, user, online)))
    book.change("r", "g1", "ann", True)
    book.change("r", "g2", "ann", True)  # already online through g1
    book.change("r", "g1", "ann", False)  # still online through g2
    assert said == [("r", "ann", True)]
    book.gateway_gone("r", "g2")
    assert said[-1] == ("r", "ann", False) and not book.online("r", "ann")
    book.change("r", "g1", "bob", True)
    book.forget("r")
    assert not book.online("r", "bob")
