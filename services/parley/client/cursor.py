"""Per-room delivery bookkeeping: dedupe, ordering and gap detection without I/O.

The gateway promises that for one room the `seq` a client sees rises by exactly
one. Across reconnects and re-joins that promise needs help from the client:
a re-join `since=<last>` may overlap what was already shown, and a bug or a
lost frame could leave a hole. `RoomCursor` decides, entry by entry, whether to
deliver, drop or hold it back, so the connection layer stays a thin adapter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Verdict(Enum):
    """What to do with an incoming entry."""

    DELIVER = "deliver"
    """The next entry in order: hand it to the application."""
    DUPLICATE = "duplicate"
    """Already delivered (seq <= last): drop it silently."""
    GAP = "gap"
    """Entries are missing before this one: hold it and fetch the hole."""


@dataclass
class RoomCursor:
    """Tracks the last delivered seq of one room and entries held behind a gap."""

    last: int | None = None
    """Seq of the last entry delivered, None until the first one arrives."""
    held: dict[int, dict[str, object]] = field(default_factory=dict)
    """Entries that arrived after a gap, keyed by seq, waiting for the hole to fill."""

    def classify(self, seq: int) -> Verdict:
        """Decide what to do with an entry carrying `seq` (does not change state)."""
        if self.last is None or seq == self.last + 1:
            return Verdict.DELIVER
        if seq <= self.last:
            return Verdict.DUPLICATE
        return Verdict.GAP

    def advance(self, seq: int) -> None:
        """Record that the entry with `seq` was delivered."""
        self.last = seq
        self.held.pop(seq, None)

    def hold(self, seq: int, frame: dict[str, object]) -> None:
        """Keep an out-of-order entry until the entries before it arrive."""
        self.held[seq] = frame

    def missing(self) -> tuple[int, int] | None:
        """The inclusive seq range still missing before the first held entry."""
        if not self.held or self.last is None:
            return None
        first = min(self.held)
        if first <= self.last + 1:
            return None
        return self.last + 1, first - 1

    def release(self) -> list[dict[str, object]]:
        """Pop held entries that are now next in order, in seq order."""
        out: list[dict[str, object]] = []
        if self.last is None:
            return out
        # Entries at or below `last` were filled by the resync: drop them.
        for seq in [s for s in self.held if s <= self.last]:
            del self.held[seq]
        while self.last + 1 in self.held:
            seq = self.last + 1
            out.append(self.held.pop(seq))
            self.last = seq
        return out

    def skip_to_held(self) -> int | None:
        """Give up on the hole: jump to the first held entry. Returns the seq skipped to."""
        if not self.held:
            return None
        first = min(self.held)
        self.last = first - 1
        return first
