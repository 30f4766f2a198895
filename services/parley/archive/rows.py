"""Log entries as rows of `parley_entries`, and back."""

from __future__ import annotations

import datetime
from typing import Any

from parley.room.entries import EntryKind, LogEntry

ARCHIVED_KINDS = frozenset(
    {
        EntryKind.CREATE,
        EntryKind.MESSAGE,
        EntryKind.JOIN,
        EntryKind.LEAVE,
        EntryKind.DELETE,
        EntryKind.EDIT,
        EntryKind.UNSEND,
        EntryKind.REACT,
        EntryKind.UNREACT,
    }
)
"""Entries with a seq of their own: what clients see. Entries without one
(epochs, moves, invitations, read markers, archive marks) repeat the previous
seq and cannot be told apart by (room, seq); they are bookkeeping."""

Row = tuple[str, int, str, str, str, datetime.datetime, int]
"""(room, seq, kind, sender, body, ts, target), as inserted."""


def kind_name(kind: EntryKind) -> str:
    """`message`, `join`, `edit`, ...: the entry kind's name, lower case."""
    return kind.name.lower()


def to_row(room: str, entry: LogEntry) -> Row:
    ts = datetime.datetime.fromtimestamp(entry.ts_ms / 1000, tz=datetime.UTC)
    return (room, entry.seq, kind_name(entry.kind), entry.user, entry.text, ts, entry.target)


def from_row(row: tuple[Any, ...]) -> LogEntry:
    """An archived row as a log entry (no index or epoch: it is history)."""
    seq, kind, sender, body, ts, target = row
    return LogEntry(
        index=0,
        epoch=0,
        kind=EntryKind[str(kind).upper()],
        seq=int(seq),
        user=str(sender),
        text=str(body),
        ts_ms=int(ts.timestamp() * 1000),
        target=int(target or 0),
    )
