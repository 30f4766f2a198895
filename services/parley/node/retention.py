"""The retention sweep: each replica deletes what its room's policy no
longer keeps (see `parley.room.retention`).

Every `every` seconds, for each room with a policy: the replica folds the
expired entries it still holds in memory and stores a snapshot past them
(`RoomEngine.retain`); once that is durable, the store deletes the expired
entries at or below its stored snapshot. Every replica does this on its
own; they agree because the policy is the room's (or the same default) and
the cutoffs come from the committed log.
"""

from __future__ import annotations

import asyncio

from parley.observability import metrics
from parley.observability.log import get_logger
from parley.room.retention import RetentionPolicy
from parley.room.store import MAX_HELD

from .background import BackgroundLoop
from .core import NodeCore

log = get_logger("parley.node.retention")


class RetentionSweeper(BackgroundLoop):
    """Runs the sweep every `every` seconds until stopped."""

    name = "retention"

    def __init__(self, core: NodeCore, every: float) -> None:
        self.core = core
        self.every = every
        super().__init__()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            try:
                await self.sweep()
            except Exception:
                log.error("retention sweep failed", exc_info=True)

    async def sweep(self) -> int:
        """One pass over every room; returns how many entries were deleted."""
        core = self.core
        due = []
        for room, replica in list(core.rooms.items()):
            policy = RetentionPolicy.of(replica.tip, core.retention)
            if policy.keeps_all:
                continue
            cut = core.retention_cut(replica)
            expired = 0
            for entry in replica.log:
                if entry.index > replica.commit_index or not cut.expired(entry):
                    break
                expired += 1
            if expired or replica.offset > replica.snapshot_index:
                # (entries folded since the last snapshot may be expired too,
                # and the store deletes none above its snapshot: a quiet room
                # folds everything without storing one)
                core.engine.retain(room, replica.offset + expired)
            due.append((room, cut))
        if not due:
            return 0
        core.loop.kick()
        await core.loop.settled()  # the snapshots past the expired entries are durable
        deleted = 0
        for room, cut in due:
            held = cut.held if cut.held is not None else MAX_HELD
            deleted += await core.store.prune(room, cut.seq, cut.ts_ms, held)
        if deleted:
            metrics.RETENTION_DELETED.inc(deleted)
            log.info("retention deleted entries", entries=deleted, rooms=len(due))
        return deleted
