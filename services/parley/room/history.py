"""Reading a room's committed history, by seq, without touching its state.

What `history`, a Subscribe's backlog and a join with `since` read: only
committed, visible entries. These functions read the replica's in-memory
tail (the entries after its `offset`), bisecting on seq (seqs rise with the
index); what lies at or before the offset is in the store
(`LogStore.visible_before` / `visible_from`), and `stored_seq` says where
the two meet.
"""

from __future__ import annotations

import bisect

from parley.room.entries import LogEntry
from parley.room.replica import RoomReplica


def stored_seq(replica: RoomReplica) -> int:
    """The last visible seq at or before the replica's offset (-1: none):
    entries up to it are read from the store, later ones from memory."""
    return replica.base.last_seq if replica.offset else -1


def committed_visible(
    replica: RoomReplica, from_seq: int, limit: int | None = None
) -> list[LogEntry]:
    """Committed visible entries in memory with seq >= from_seq, in order."""
    log = replica.log
    end = replica.commit_index - replica.offset
    start = bisect.bisect_left(log, from_seq, 0, end, key=lambda e: e.seq)
    out: list[LogEntry] = []
    for i in range(start, end):
        entry = log[i]
        if entry.visible and entry.seq >= from_seq:
            out.append(entry)
            if limit is not None and len(out) >= limit:
                break
    return out


def committed_before(replica: RoomReplica, before_seq: int | None, limit: int) -> list[LogEntry]:
    """The last `limit` committed visible entries in memory with seq < before_seq."""
    log = replica.log
    end = replica.commit_index - replica.offset
    if before_seq is not None:
        end = bisect.bisect_left(log, before_seq, 0, end, key=lambda e: e.seq)
    out: list[LogEntry] = []
    i = end - 1
    while i >= 0 and len(out) < limit:
        if log[i].visible:
            out.append(log[i])
        i -= 1
    out.reverse()
    return out
