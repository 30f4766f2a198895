"""What a replica stores and loads: snapshots, stored records and writes."""

from __future__ import annotations

from dataclasses import dataclass

from parley.room.entries import HardState, LogEntry
from parley.room.state import RoomState


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A room's state after its log up to `index`: what stands in for those
    entries in a replica's memory, at a restart and in an InstallSnapshot."""

    index: int
    epoch: int  # of the entry at index
    state: RoomState


@dataclass(slots=True)
class RoomRecord:
    """A room replica's stored state, as loaded at start-up: the latest
    snapshot (if any) and the entries after it."""

    room: str
    hard: HardState
    entries: list[LogEntry]
    snapshot: Snapshot | None = None
    # why the stored copy is unusable (a checksum failed, entries are
    # missing): it is not loaded, and the room is rebuilt from the others
    damaged: str = ""


@dataclass(slots=True)
class RoomWrite:
    """Changes to one room's stored state, applied atomically with a batch.

    Order of application: drop (forget the room: every entry, snapshot and
    the hard state), truncate (drop entries with index >= truncate_from),
    snapshot (replace the stored one; with `install`, the history staged
    for the room becomes its entries up to the snapshot's index), then
    append entries, then replace the hard state.

    Entries at or below the snapshot's index stay stored: they are the
    room's history, read by `history` and copied to followers; only the
    entries after it are loaded at start-up.
    """

    room: str
    hard: HardState | None = None
    truncate_from: int | None = None
    entries: tuple[LogEntry, ...] | list[LogEntry] = ()
    # the room left this node (deleted, or moved to a group without it)
    drop: bool = False
    snapshot: Snapshot | None = None
    # the snapshot was installed from the administrator: move the staged history in
    install: bool = False
