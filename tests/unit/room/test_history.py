"""Reading committed history by seq: only committed, visible entries."""

from __future__ import annotations

from parley.room.entries import EntryKind, HardState, LogEntry
from parley.room.history import committed_before, committed_visible
from parley.room.records import RoomRecord
from parley.room.replica import RoomReplica


def replica(commit: int) -> RoomReplica:
    kinds = [EntryKind.EPOCH, EntryKind.CREATE, EntryKind.MESSAGE, EntryKind.EPOCH,
             EntryKind.MESSAGE, EntryKind.MESSAGE, EntryKind.MESSAGE]  # fmt: skip
    entries, seq = [], -1
    for index, kind in enumerate(kinds, start=1):
        if kind is not EntryKind.EPOCH:
            seq += 1
        entries.append(LogEntry(index, 1, kind, max(seq, 0), "u", f"t{index}"))
    rep = RoomReplica("r", "a", ["a"], RoomRecord("r", HardState(1, "a"), entries), 0)
    rep.commit_index = commit
    return rep


def seqs(entries: list[LogEntry]) -> list[int]:
    return [e.seq for e in entries]


def test_from_a_seq_skips_epoch_entries_and_stops_at_the_commit() -> None:
    rep = replica(commit=6)  # seqs 0..3 committed; seq 4 (index 7) is not
    assert seqs(committed_visible(rep, 0)) == [0, 1, 2, 3]
    assert seqs(committed_visible(rep, 2)) == [2, 3]
    assert seqs(committed_visible(rep, 1, limit=2)) == [1, 2]
    assert committed_visible(rep, 9) == []


def test_before_a_seq_gives_the_latest_ones_in_order() -> None:
    rep = replica(commit=7)
    assert seqs(committed_before(rep, None, 2)) == [3, 4]
    assert seqs(committed_before(rep, 3, 10)) == [0, 1, 2]
    assert seqs(committed_before(rep, 1, 10)) == [0]
    assert committed_before(rep, 0, 10) == []
