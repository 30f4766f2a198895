"""The LogStore interface: durable room logs, epochs and votes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from parley.room.entries import RoomRecord, RoomWrite


class LogStore(Protocol):
    """Where a node keeps its room replicas. Implementations: memory, sqlite.

    Methods block; the node calls them from one worker thread, never from the
    event loop, and never concurrently.
    """

    def load(self) -> dict[str, RoomRecord]:
        """Every stored room replica, for start-up."""
        ...

    def write(self, batch: Sequence[RoomWrite]) -> None:
        """Apply every write of the batch atomically and durably.

        When this returns, the batch survives a crash of the process (and, for
        sqlite, of the machine): the caller acknowledges entries and votes only
        afterwards.
        """
        ...

    def close(self) -> None:
        """Release files and connections."""
        ...
