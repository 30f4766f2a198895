"""Retention policies: what a room keeps, by count and by age."""

from __future__ import annotations

from parley.room.entries import EntryKind, LogEntry
from parley.room.retention import Cutoffs, RetentionPolicy, cutoffs
from parley.room.state import RoomOptions, RoomState, create_text


def message(seq: int, ts_ms: int) -> LogEntry:
    return LogEntry(seq + 1, 1, EntryKind.MESSAGE, seq, "u", "t", ts_ms, f"m{seq}")


def test_a_room_records_its_own_retention_in_its_create_entry() -> None:
    text = create_text(("a", "b", "c"), RoomOptions(retain=(100, 3600)))
    assert text == "a,b,c;retain=100,3600"
    state = RoomState()
    state.apply(LogEntry(1, 1, EntryKind.CREATE, 0, "o", text, 0, "inc"))
    assert state.replicas == ("a", "b", "c")
    assert (state.retain_entries, state.retain_seconds) == (100, 3600)
    # and it survives a snapshot
    again = RoomState.from_json(state.to_json())
    assert (again.retain_entries, again.retain_seconds) == (100, 3600)
    assert create_text(("a",)) == "a"  # no retention of its own: the default


def test_a_private_or_direct_room_records_it_in_its_create_entry() -> None:
    text = create_text(("a", "b"), RoomOptions(retain=(5, 0), dm=("ann", "bob")))
    assert text == "a,b;retain=5,0;private;dm=ann,bob"
    state = RoomState()
    state.apply(LogEntry(1, 1, EntryKind.CREATE, 0, "ann", text, 0, "inc"))
    assert state.private and state.dm == ("ann", "bob")
    assert state.members == {"ann", "bob"} and state.retain_entries == 5
    state.apply(LogEntry(2, 1, EntryKind.INVITE, 0, "ann", "eve"))
    state.apply(LogEntry(3, 1, EntryKind.READ, 0, "bob", target=0))
    again = RoomState.from_json(state.to_json())
    assert (again.private, again.dm, again.invited) == (True, ("ann", "bob"), {"eve"})
    assert again.reads == state.reads
    # a snapshot from before private rooms reads as a public room
    old = RoomState.from_json(
        state.to_json().replace(b',"private":true', b"").replace(b',"dm":["ann","bob"]', b"")
    )
    assert not old.private and old.dm == ()


def test_the_room_policy_wins_over_the_default() -> None:
    default = RetentionPolicy(entries=10)
    own = RoomState(retain_seconds=60)
    assert RetentionPolicy.of(own, default) == RetentionPolicy(0, 60)
    assert RetentionPolicy.of(RoomState(), default) == default
    assert RetentionPolicy().keeps_all and not default.keeps_all


def test_cutoffs_by_count_and_by_age() -> None:
    log = [message(seq, ts_ms=1000 * seq) for seq in range(1, 21)]
    by_count = cutoffs(RetentionPolicy(entries=5), last_seq=20, now_ms=20_000)
    assert [e.seq for e in by_count.keep(log)] == [16, 17, 18, 19, 20]
    by_age = cutoffs(RetentionPolicy(seconds=3), last_seq=20, now_ms=20_000)
    assert [e.seq for e in by_age.keep(log)] == [17, 18, 19, 20]
    both = cutoffs(RetentionPolicy(entries=2, seconds=10), last_seq=20, now_ms=20_000)
    assert [e.seq for e in both.keep(log)] == [19, 20]
    assert Cutoffs().keep(log) is log
    assert cutoffs(RetentionPolicy(entries=50), last_seq=20, now_ms=0) == Cutoffs(0, 0)


def test_an_archive_holds_back_what_it_has_not_confirmed() -> None:
    """With an archive, nothing after its confirmed seq expires, by count or by age."""
    log = [message(seq, ts_ms=1000 * seq) for seq in range(1, 21)]
    policy = RetentionPolicy(entries=2, seconds=1)
    held = cutoffs(policy, last_seq=20, now_ms=20_000, archived_seq=10)
    assert [e.seq for e in held.keep(log)] == list(range(11, 21))
    nothing_archived = cutoffs(policy, last_seq=20, now_ms=20_000, archived_seq=-1)
    assert nothing_archived.keep(log) == log
    caught_up = cutoffs(policy, last_seq=20, now_ms=20_000, archived_seq=20)
    assert [e.seq for e in caught_up.keep(log)] == [19, 20]  # as without an archive


def test_archive_marks_rise_and_survive_snapshots() -> None:
    state = RoomState()
    assert state.archived_seq == -1
    for target in (5, 3, 9):
        state.apply(LogEntry(1, 1, EntryKind.ARCHIVED, 0, target=target))
    assert state.archived_seq == 9
    assert RoomState.from_json(state.to_json()).archived_seq == 9
    assert state.copy().archived_seq == 9
    assert RoomState.from_json(RoomState().to_json()).archived_seq == -1
    assert not LogEntry(1, 1, EntryKind.ARCHIVED, 0, target=9).visible
