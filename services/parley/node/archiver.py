"""Copies every committed entry of the rooms this node administers to the
archive database, from a cursor kept in the room's own log.

Why the administrator: it alone knows what is committed as soon as it is,
and exactly one node archives a room at a time (two at once, across a
failover, would only write the same rows twice: writes are idempotent).

The cursor is an `ARCHIVED` entry (no seq, never shown), appended once the
database has confirmed the rows up to its `target` seq. It is replicated and
snapshotted like everything else, so a failover, a move or a restart resumes
after the last confirmed batch and skips nothing; a batch written but not yet
marked is written again (ON CONFLICT DO NOTHING). While an archive is
configured, retention keeps every entry after the cursor (retention.py), so
nothing is deleted before the archive has it.
"""

from __future__ import annotations

import asyncio

from parley.archive.postgres import PostgresArchive
from parley.archive.rows import ARCHIVED_KINDS, to_row
from parley.observability import metrics
from parley.observability.log import get_logger
from parley.room.entries import EntryKind, LogEntry
from parley.room.errors import RoomError
from parley.room.history import committed_visible, stored_seq
from parley.room.replica import RoomReplica

from .background import BackgroundLoop
from .core import NodeCore

log = get_logger("parley.node.archiver")

MARK_TIMEOUT = 5.0
"""Seconds to wait for an archive mark to commit before trying again later."""
MAX_BACKOFF = 5.0
"""Longest wait between attempts while the database is unreachable."""


class Archiver(BackgroundLoop):
    """Archives in passes every `every` seconds, `batch` entries per room per pass."""

    name = "archiver"

    def __init__(
        self, core: NodeCore, archive: PostgresArchive, every: float = 0.5, batch: int = 1000
    ) -> None:
        self.core = core
        self.archive = archive
        self.every = every
        self.batch = batch
        super().__init__()
        self._migrated = False

    async def _run(self) -> None:
        delay = self.every
        while True:
            more = False
            try:
                if not self._migrated:
                    await self.archive.migrate()
                    self._migrated = True
                    log.info("archive ready")
                more = await self.archive_pass()
                delay = self.every
            except Exception as error:
                # Chat goes on without the archive; the lag shows, and the
                # retention hold keeps what it has not confirmed.
                log.warning("archive unavailable", error=str(error)[:200])
                delay = min(max(delay * 2, 0.5), MAX_BACKOFF)
            self.update_lag()
            # behind: the next batch at once (each pass awaits the database
            # and a commit, so the loop still yields)
            await asyncio.sleep(0 if more else delay)

    def update_lag(self) -> int:
        """Set the lag gauge: committed entries of administered rooms not archived yet."""
        lag = 0
        for room in list(self.core.administered):
            replica = self.core.rooms.get(room)
            if replica is not None:
                lag += max(0, replica.committed_seq - replica.tip.archived_seq)
        metrics.ARCHIVE_LAG.set(lag)
        return lag

    async def archive_pass(self) -> bool:
        """One batch for every administered room; True when some room has more."""
        more = False
        for room in sorted(self.core.administered):
            replica = self.core.rooms.get(room)
            if replica is None or not replica.serving or not replica.tip.exists:
                continue
            more |= await self._archive_room(replica)
        return more

    async def _archive_room(self, replica: RoomReplica) -> bool:
        start = replica.tip.archived_seq + 1
        end = replica.committed_seq
        if start > end:
            return False
        entries = await self._committed_from(replica, start)
        if not entries:
            return False
        rows = [to_row(replica.room, e) for e in entries if e.kind in ARCHIVED_KINDS]
        if rows:
            await self.archive.write(rows)
            metrics.ARCHIVED_ENTRIES.inc(len(rows))
        if self.core.rooms.get(replica.room) is not replica or not replica.serving:
            return False  # no longer ours: the next administrator marks it
        try:
            mark = self.core.propose(replica, EntryKind.ARCHIVED, "", target=entries[-1].seq)
            await asyncio.wait_for(mark, MARK_TIMEOUT)
        except (RoomError, TimeoutError) as error:
            # handed over meanwhile, or no majority now: the rows are in the
            # database; whoever marks next writes them again, harmlessly
            log.info("archive mark not committed", room=replica.room, error=str(error)[:200])
            return False
        return entries[-1].seq < end

    async def _committed_from(self, replica: RoomReplica, from_seq: int) -> list[LogEntry]:
        """Up to `batch` committed visible entries from `from_seq` on: the
        store's first, then memory's."""
        out: list[LogEntry] = []
        if from_seq <= stored_seq(replica):
            out = await self.core.store.visible_from(
                replica.room, from_seq, replica.offset, self.batch
            )
            if out:
                from_seq = out[-1].seq + 1
        if len(out) < self.batch:
            out += committed_visible(replica, from_seq, self.batch - len(out))
        return out
