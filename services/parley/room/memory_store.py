"""An in-memory LogStore: the reference semantics, for tests and `--store memory`.

It keeps nothing across a restart of the process. The sqlite backend must
behave exactly like this one (the store tests run against both), so the
checks every backend makes on a write live here too, in `check_write`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence

from parley.room.entries import ANNOTATION_KINDS, HardState, LogEntry
from parley.room.records import RoomRecord, RoomWrite, Snapshot
from parley.room.store import MAX_HELD


def check_write(write: RoomWrite, last_index: int) -> int:
    """Check that a write keeps a room's log contiguous (from index 1, or
    from its snapshot).

    Both backends call this before applying a write, so a bug upstream (an
    append that skips or overwrites entries without truncating first) fails
    loudly instead of leaving a log with holes or duplicates on disk.

    Args:
        write: The write to check.
        last_index: The index of the room's last stored entry (or its
            snapshot's, if later; 0 if none), before the write.

    Returns:
        The index of the room's last entry once the write is applied.

    Raises:
        ValueError: If `truncate_from` is below 1, or the appended entries do
            not continue the (truncated) log one index at a time.
    """
    if write.drop:
        last_index = 0
    if write.truncate_from is not None:
        if write.truncate_from < 1:
            raise ValueError(
                f"room {write.room!r}: truncate_from must be >= 1, got {write.truncate_from}"
            )
        last_index = min(last_index, write.truncate_from - 1)
    if write.snapshot is not None:
        # a snapshot stands for the entries up to its index
        last_index = max(last_index, write.snapshot.index)
    for entry in write.entries:
        if entry.index != last_index + 1:
            raise ValueError(
                f"room {write.room!r}: entry index {entry.index} does not follow "
                f"{last_index}; truncate first to replace entries"
            )
        last_index = entry.index
    return last_index


class MemoryLogStore:
    """A LogStore that keeps every room in dictionaries.

    Writes are atomic like the sqlite backend's: a batch is checked as a whole
    before any of it is applied, so a failed `write` changes nothing. Reads
    may come from another thread than writes (a lock keeps them apart).
    """

    def __init__(self) -> None:
        """Create an empty store."""
        self._logs: dict[str, dict[int, LogEntry]] = {}
        """Each room's entries by index (history below the snapshot included)."""
        self._hard: dict[str, HardState] = {}
        """Each room's last written hard state (only rooms that wrote one)."""
        self._snapshots: dict[str, Snapshot] = {}
        self._staged: dict[str, dict[int, LogEntry]] = {}
        self._lock = threading.Lock()

    def _last(self, room: str) -> int:
        log = self._logs.get(room)
        last = max(log) if log else 0
        snapshot = self._snapshots.get(room)
        return max(last, snapshot.index) if snapshot else last

    def load(self) -> dict[str, RoomRecord]:
        """Every stored room replica, sorted by room name: its hard state,
        snapshot and the entries after the snapshot.

        Returns:
            Fresh records: callers may mutate them (and their lists and hard
            states) without touching the store. Entries, snapshots and their
            states are shared: copy a state before changing it.
        """
        with self._lock:
            rooms = sorted(
                {room for room, log in self._logs.items() if log}
                | self._hard.keys()
                | self._snapshots.keys()
            )
            records: dict[str, RoomRecord] = {}
            for room in rooms:
                hard = self._hard.get(room, HardState())
                snapshot = self._snapshots.get(room)
                after = snapshot.index if snapshot else 0
                log = self._logs.get(room, {})
                records[room] = RoomRecord(
                    room=room,
                    hard=HardState(hard.epoch, hard.voted_for, hard.config_floor),
                    entries=[log[i] for i in sorted(log) if i > after],
                    snapshot=snapshot,
                )
            return records

    def write(self, batch: Sequence[RoomWrite]) -> None:
        """Apply every write of the batch in order, all or nothing.

        Args:
            batch: Writes to apply; one room may appear more than once.

        Raises:
            ValueError: If any write would leave a log non-contiguous (see
                `check_write`); then nothing of the batch is applied.
        """
        with self._lock:
            # Check the whole batch against a running view of each log's
            # length first: applying can then no longer fail half-way.
            last: dict[str, int] = {}
            for write in batch:
                current = last.get(write.room)
                if current is None:
                    current = self._last(write.room)
                last[write.room] = check_write(write, current)
            for write in batch:
                self._apply(write)

    def _apply(self, write: RoomWrite) -> None:
        room = write.room
        if write.drop:
            self._logs.pop(room, None)
            self._hard.pop(room, None)
            self._snapshots.pop(room, None)
            if not write.install:  # (a copy made from a snapshot keeps its staged history)
                self._staged.pop(room, None)
        log = self._logs.setdefault(room, {})
        if write.truncate_from is not None:
            for index in [i for i in log if i >= write.truncate_from]:
                del log[index]
        if write.snapshot is not None:
            self._snapshots[room] = write.snapshot
            if write.install:
                # (history staged for a later snapshot stays staged)
                staged = self._staged.get(room, {})
                for index in sorted(i for i in staged if i <= write.snapshot.index):
                    log[index] = staged.pop(index)
        for entry in write.entries:
            log[entry.index] = entry
        if write.hard is not None:
            # A copy: the caller may keep mutating its HardState object.
            self._hard[room] = HardState(
                write.hard.epoch, write.hard.voted_for, write.hard.config_floor
            )

    def stage(self, room: str, entries: Iterable[LogEntry]) -> None:
        """Keep committed history aside for the room's next installed snapshot."""
        with self._lock:
            self._staged.setdefault(room, {}).update((e.index, e) for e in entries)

    def prune(self, room: str, before_seq: int, before_ts_ms: int, held: int = MAX_HELD) -> int:
        """Retention: delete expired entries at or below the stored snapshot."""
        with self._lock:
            snapshot = self._snapshots.get(room)
            log = self._logs.get(room, {})
            if snapshot is None:
                return 0
            doomed = [
                i
                for i, e in log.items()
                if i <= snapshot.index
                and (e.seq < before_seq or e.ts_ms < before_ts_ms)
                and e.seq < held
            ]
            for index in doomed:
                del log[index]
            return len(doomed)

    def entries(self, room: str, after: int, upto: int, limit: int) -> list[LogEntry]:
        """Stored entries with after < index <= upto, in order, at most limit."""
        with self._lock:
            log = self._logs.get(room, {})
            found = sorted(i for i in log if after < i <= upto)[:limit]
            return [log[i] for i in found]

    def visible_before(
        self, room: str, before_seq: int | None, upto: int, limit: int
    ) -> list[LogEntry]:
        """The last `limit` visible entries with index <= upto and seq <
        before_seq (any seq when None), in order."""
        with self._lock:
            log = self._logs.get(room, {})
            found = [
                log[i]
                for i in sorted(log)
                if i <= upto and log[i].visible and (before_seq is None or log[i].seq < before_seq)
            ]
            return found[-limit:] if limit else []

    def visible_from(self, room: str, from_seq: int, upto: int, limit: int) -> list[LogEntry]:
        """The first `limit` visible entries with index <= upto and seq >=
        from_seq, in order."""
        with self._lock:
            log = self._logs.get(room, {})
            found = [
                log[i]
                for i in sorted(log)
                if i <= upto and log[i].visible and log[i].seq >= from_seq
            ]
            return found[:limit]

    def annotations(self, room: str, first_seq: int, last_seq: int, upto: int) -> list[LogEntry]:
        """Edits, unsends and reactions about seqs first_seq..last_seq, in order."""
        with self._lock:
            log = self._logs.get(room, {})
            return [
                log[i]
                for i in sorted(log)
                if i <= upto
                and log[i].kind in ANNOTATION_KINDS
                and first_seq <= log[i].target <= last_seq
            ]

    def close(self) -> None:
        """Nothing to release; the data stays readable until garbage collected."""
