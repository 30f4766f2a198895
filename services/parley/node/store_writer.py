"""The node's one store writer: every store write, on one worker thread.

Stores block (sqlite fsyncs); the event loop must not. One thread keeps the
writes in order and never concurrent, as `LogStore` requires; reads of
history (older than a replica's in-memory tail) run on their own threads
beside it, so a page of history never waits behind an fsync.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from parley.observability import metrics
from parley.observability.log import get_logger
from parley.room.entries import LogEntry
from parley.room.errors import Unavailable
from parley.room.records import RoomRecord, RoomWrite
from parley.room.store import CorruptionError, LogStore, StoreFullError

log = get_logger("parley.node.store")

FULL_RETRY_FIRST = 0.1
FULL_RETRY_MAX = 2.0


class StoreWriter:
    """Runs a LogStore's blocking calls off the event loop, one at a time."""

    def __init__(self, store: LogStore, name: str) -> None:
        self.store = store
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"store-{name}")
        self._readers = ThreadPoolExecutor(2, thread_name_prefix=f"read-{name}")
        self.writable = True
        """False while the disk is full (the node answers health NOT_SERVING)."""
        self.on_writable: Callable[[bool], None] = lambda _writable: None
        # a read found a room's stored copy damaged: (room, why)
        self.on_damaged: Callable[[str, str], None] = lambda _room, _why: None
        metrics.STORE_WRITABLE.set(1)

    async def load(self) -> dict[str, RoomRecord]:
        """Every stored room replica."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.store.load)

    async def write(self, batch: Sequence[RoomWrite]) -> None:
        """Make a batch durable.

        A full disk writes nothing: the same batch is tried again until it
        fits, and meanwhile the Ready loop (so every acknowledgement, vote
        and heartbeat of this node) waits, and health says NOT_SERVING, so
        the peers take its rooms over. Any other failure (an I/O error, a
        failed fsync) leaves what is on disk unknown: the node exits rather
        than acknowledge anything it may not hold, and its restart reads
        what really is there.
        """
        loop = asyncio.get_running_loop()
        delay = FULL_RETRY_FIRST
        while True:
            try:
                await loop.run_in_executor(self._executor, self.store.write, batch)
            except StoreFullError as err:
                if self.writable:
                    log.error("store full: acknowledging nothing until it has room", err=str(err))
                    self._set_writable(False)
                await asyncio.sleep(delay)
                delay = min(2 * delay, FULL_RETRY_MAX)
                continue
            except Exception:
                log.critical("store write failed; exiting", exc_info=True)
                raise SystemExit(70) from None
            if not self.writable:
                log.info("store writable again")
                self._set_writable(True)
            return

    def _set_writable(self, writable: bool) -> None:
        self.writable = writable
        metrics.STORE_WRITABLE.set(1 if writable else 0)
        self.on_writable(writable)

    async def stage(self, room: str, entries: list[LogEntry]) -> None:
        """Durably keep history from a snapshot's sender aside (see `LogStore.stage`)."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self.store.stage, room, entries)

    async def prune(self, room: str, before_seq: int, before_ts_ms: int) -> int:
        """Retention's deletes (see `LogStore.prune`), in line with the writes."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, self.store.prune, room, before_seq, before_ts_ms
        )

    async def _read(self, room: str, read: Callable[[], list[LogEntry]]) -> list[LogEntry]:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._readers, read)
        except CorruptionError as err:
            self.on_damaged(room, str(err))
            raise Unavailable(f"{room}: this copy is damaged and being rebuilt; try again") from err

    async def entries(self, room: str, after: int, upto: int, limit: int) -> list[LogEntry]:
        """Stored entries after < index <= upto (see `LogStore.entries`).

        Raises:
            Unavailable: the room's copy here is damaged (`on_damaged` was told).
        """
        return await self._read(room, lambda: self.store.entries(room, after, upto, limit))

    async def visible_before(
        self, room: str, before_seq: int | None, upto: int, limit: int
    ) -> list[LogEntry]:
        """A history page from the store (see `LogStore.visible_before`)."""
        return await self._read(
            room, lambda: self.store.visible_before(room, before_seq, upto, limit)
        )

    async def visible_from(self, room: str, from_seq: int, upto: int, limit: int) -> list[LogEntry]:
        """A backlog page from the store (see `LogStore.visible_from`)."""
        return await self._read(room, lambda: self.store.visible_from(room, from_seq, upto, limit))

    async def close(self) -> None:
        """Close the store once every queued call is done."""
        loop = asyncio.get_running_loop()
        self._readers.shutdown(wait=True)
        await loop.run_in_executor(self._executor, self.store.close)
        self._executor.shutdown(wait=True)
