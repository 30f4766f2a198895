"""An in-memory LogStore: the reference semantics, for tests and `--store memory`.

It keeps nothing across a restart of the process. The sqlite backend must
behave exactly like this one (the store tests run against both), so the
checks every backend makes on a write live here too, in `check_write`.
"""

from __future__ import annotations

from collections.abc import Sequence

from parley.room.entries import HardState, LogEntry, RoomRecord, RoomWrite


def check_write(write: RoomWrite, last_index: int) -> int:
    """Check that a write keeps a room's log contiguous from index 1.

    Both backends call this before applying a write, so a bug upstream (an
    append that skips or overwrites entries without truncating first) fails
    loudly instead of leaving a log with holes or duplicates on disk.

    Args:
        write: The write to check.
        last_index: The index of the room's last stored entry (0 if none),
            before the write.

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
    before any of it is applied, so a failed `write` changes nothing.
    """

    def __init__(self) -> None:
        """Create an empty store."""
        self._logs: dict[str, list[LogEntry]] = {}
        """Each room's entries; the entry with index i is at position i - 1."""
        self._hard: dict[str, HardState] = {}
        """Each room's last written hard state (only rooms that wrote one)."""

    def load(self) -> dict[str, RoomRecord]:
        """Every stored room replica, sorted by room name.

        Returns:
            Fresh records: callers may mutate them (and their lists and hard
            states) without touching the store. Entries themselves are frozen
            and shared.
        """
        rooms = sorted({room for room, log in self._logs.items() if log} | self._hard.keys())
        records: dict[str, RoomRecord] = {}
        for room in rooms:
            hard = self._hard.get(room, HardState())
            records[room] = RoomRecord(
                room=room,
                hard=HardState(hard.epoch, hard.voted_for, hard.config_floor),
                entries=list(self._logs.get(room, ())),
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
        # Check the whole batch against a running view of each log's length
        # first: applying can then no longer fail half-way.
        last: dict[str, int] = {}
        for write in batch:
            current = last.get(write.room)
            if current is None:
                current = len(self._logs.get(write.room, ()))
            last[write.room] = check_write(write, current)
        for write in batch:
            if write.drop:
                self._logs.pop(write.room, None)
                self._hard.pop(write.room, None)
            log = self._logs.setdefault(write.room, [])
            if write.truncate_from is not None:
                del log[write.truncate_from - 1 :]
            log.extend(write.entries)
            if write.hard is not None:
                # A copy: the caller may keep mutating its HardState object.
                self._hard[write.room] = HardState(
                    write.hard.epoch, write.hard.voted_for, write.hard.config_floor
                )

    def close(self) -> None:
        """Nothing to release; the data stays readable until garbage collected."""
