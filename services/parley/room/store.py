"""The LogStore interface: durable room logs, epochs and votes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from parley.room.entries import LogEntry
from parley.room.records import RoomRecord, RoomWrite

MAX_HELD = 2**63 - 1
"""`prune`'s `held` when nothing is held back (no archive)."""


class StoreFullError(OSError):
    """The disk is full: nothing of the batch was written, and the same
    batch may be written again once there is room."""


class CorruptionError(RuntimeError):
    """A stored entry or snapshot does not match its checksum (or is unreadable)."""

    def __init__(self, message: str, room: str = "") -> None:
        super().__init__(message)
        self.room = room


class LogStore(Protocol):
    """Where a node keeps its room replicas. Implementations: memory, sqlite.

    Methods block; the node calls `load`, `write` and `stage` from one
    worker thread, never from the event loop, and never concurrently; the
    reads (`entries`, `visible_*`) from other threads, alongside them.
    """

    def load(self) -> dict[str, RoomRecord]:
        """Every stored room replica, for start-up: hard state, latest
        snapshot, and only the entries after it."""
        ...

    def stage(self, room: str, entries: Iterable[LogEntry]) -> None:
        """Durably keep committed history aside until the room's next
        installed snapshot (`RoomWrite.install`) moves it into the log."""
        ...

    def prune(self, room: str, before_seq: int, before_ts_ms: int, held: int = MAX_HELD) -> int:
        """Retention: delete the room's entries with seq < before_seq or
        ts_ms < before_ts_ms, but never one with seq >= held (the archive
        lacks it), and only at or below its stored snapshot's index (what a
        restart does not load). Returns how many went.

        Raises:
            StoreFullError: the disk is full (a delete needs room too).
        """
        ...

    def entries(self, room: str, after: int, upto: int, limit: int) -> list[LogEntry]:
        """Stored entries with after < index <= upto, in order, at most limit."""
        ...

    def visible_before(
        self, room: str, before_seq: int | None, upto: int, limit: int
    ) -> list[LogEntry]:
        """The last `limit` visible entries at index <= upto with seq <
        before_seq (None: any), in order: a `history` page."""
        ...

    def visible_from(self, room: str, from_seq: int, upto: int, limit: int) -> list[LogEntry]:
        """The first `limit` visible entries at index <= upto with seq >=
        from_seq, in order: a backlog page."""
        ...

    def annotations(self, room: str, first_seq: int, last_seq: int, upto: int) -> list[LogEntry]:
        """Edits, unsends and reactions at index <= upto whose target is a seq
        from first_seq to last_seq, in log order: what `history` folds into
        the messages of a page."""
        ...

    def write(self, batch: Sequence[RoomWrite]) -> None:
        """Apply every write of the batch atomically and durably.

        When this returns, the batch survives a crash of the process (and, for
        sqlite, of the machine): the caller acknowledges entries and votes only
        afterwards.

        Raises:
            StoreFullError: the disk is full; nothing was written.
        """
        ...

    def close(self) -> None:
        """Release files and connections."""
        ...
