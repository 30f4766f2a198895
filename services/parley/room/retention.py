"""Retention: which of a room's entries are kept, by count and by age.

A policy keeps a room's last `entries` messages and those of the last
`seconds` (either 0: no bound of that kind; both 0: everything is kept).
A room may set its own at create (recorded in its create entry, so every
replica applies the same one); otherwise the nodes' default applies.

Every replica deletes what its policy no longer keeps from its own store
(`parley.node.retention`), only below a stored snapshot, so that a restart
never misses what it deleted. Reads filter with the same cutoffs, so what
`history` and a backlog return does not depend on when a sweep last ran.
"""

from __future__ import annotations

from dataclasses import dataclass

from parley.room.entries import LogEntry
from parley.room.state import RoomState


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Keep the last `entries` messages and those of the last `seconds`."""

    entries: int = 0
    seconds: int = 0

    @property
    def keeps_all(self) -> bool:
        return not self.entries and not self.seconds

    @classmethod
    def of(cls, state: RoomState, default: RetentionPolicy) -> RetentionPolicy:
        """The room's own policy if it set one at create, else the default."""
        if state.retain_entries or state.retain_seconds:
            return cls(state.retain_entries, state.retain_seconds)
        return default


@dataclass(frozen=True, slots=True)
class Cutoffs:
    """An entry is gone when its seq is below `seq` or its time below `ts_ms`,
    unless its seq is `held` or later (not archived yet: see node/archiver.py)."""

    seq: int = 0
    ts_ms: int = 0
    held: int | None = None

    def expired(self, entry: LogEntry) -> bool:
        if self.held is not None and entry.seq >= self.held:
            return False
        return entry.seq < self.seq or entry.ts_ms < self.ts_ms

    def keep(self, entries: list[LogEntry]) -> list[LogEntry]:
        """The entries retention keeps."""
        if not self.seq and not self.ts_ms:
            return entries
        return [e for e in entries if not self.expired(e)]


def cutoffs(
    policy: RetentionPolicy, last_seq: int, now_ms: int, archived_seq: int | None = None
) -> Cutoffs:
    """Where a policy cuts a room whose last committed seq is `last_seq`.

    The create entry (seq 0) goes like any other once it is past the cut.
    With an archive (`archived_seq`: what it has confirmed), nothing after
    it is cut, whatever the policy.
    """
    seq = last_seq - policy.entries + 1 if policy.entries else 0
    ts_ms = now_ms - policy.seconds * 1000 if policy.seconds else 0
    held = archived_seq + 1 if archived_seq is not None else None
    return Cutoffs(max(seq, 0), max(ts_ms, 0), held)
