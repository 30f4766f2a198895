"""The node's one store writer: every store write in order, one at a time.

Stores block (sqlite fsyncs). A big batch is written on one worker thread,
so the event loop gathers the next batch meanwhile; a small one, when
nothing else is queued on that thread, is written on the loop's own thread,
which at low load is faster than the two thread hops (INLINE_WRITE_ENTRIES).
Either way the writes stay in order and never concurrent, as `LogStore`
requires. Reads of history (older than a replica's in-memory tail) run on
their own threads beside it, so a page of history never waits behind an
fsync.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from parley.observability import metrics
from parley.observability.log import get_logger
from parley.room.entries import LogEntry
from parley.room.errors import Unavailable
from parley.room.records import RoomRecord, RoomWrite
from parley.room.store import MAX_HELD, CorruptionError, LogStore, StoreFullError

log = get_logger("parley.node.store")

T = TypeVar("T")

INLINE_WRITE_ENTRIES = 16
"""A batch of at most this many entries (and no snapshot) is written on the
event loop's own thread: at low load the hops to the writer thread and back
cost more than the write (measured 0.4 of a follower's 1.0 ms per append,
on a core shared with the other processes), while a big batch, written on
the thread, lets the loop gather the next one meanwhile."""

FULL_RETRY_FIRST = 0.1
FULL_RETRY_MAX = 2.0


class StoreWriter:
    """Runs a LogStore's blocking calls off the event loop, one at a time."""

    def __init__(
        self, store: LogStore, name: str, inline_entries: int | None = INLINE_WRITE_ENTRIES
    ) -> None:
        """A writer over `store`.

        Args:
            store: the store.
            name: names the threads.
            inline_entries: batches up to this many entries are written on
                the event loop's thread (None: every batch on the writer thread).
        """
        self.store = store
        self._inline_entries = inline_entries
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"store-{name}")
        self._readers = ThreadPoolExecutor(2, thread_name_prefix=f"read-{name}")
        self._busy = 0
        """Calls queued or running on the writer thread."""
        self.writable = True
        """False while the disk is full (the node answers health NOT_SERVING)."""
        self.on_writable: Callable[[bool], None] = lambda _writable: None
        # a read found a room's stored copy damaged: (room, why)
        self.on_damaged: Callable[[str, str], None] = lambda _room, _why: None
        metrics.STORE_WRITABLE.set(1)

    async def load(self) -> dict[str, RoomRecord]:
        """Every stored room replica."""
        return await self._on_writer(self.store.load)

    async def write(self, batch: Sequence[RoomWrite], inline: bool = True) -> None:
        """Make a batch durable (`inline`: a small one may be written on the
        loop's own thread).

        A full disk writes nothing: the same batch is tried again until it
        fits, and meanwhile the Ready loop (so every acknowledgement, vote
        and heartbeat of this node) waits, and health says NOT_SERVING, so
        the peers take its rooms over. Any other failure (an I/O error, a
        failed fsync) leaves what is on disk unknown: the node exits rather
        than acknowledge anything it may not hold, and its restart reads
        what really is there.
        """
        delay = FULL_RETRY_FIRST
        while True:
            try:
                if inline and self._busy == 0 and self._small(batch):
                    self.store.write(batch)
                else:
                    await self._on_writer(self.store.write, batch)
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

    async def _on_writer(self, call: Callable[..., T], *args: Any) -> T:
        """Run a store call on the writer thread, in line with the others."""
        self._busy += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, call, *args)
        finally:
            self._busy -= 1

    def _small(self, batch: Sequence[RoomWrite]) -> bool:
        """A batch cheap enough to write inline (see INLINE_WRITE_ENTRIES)."""
        if self._inline_entries is None:
            return False
        entries = 0
        for write in batch:
            if write.snapshot is not None or write.drop:
                return False
            entries += len(write.entries)
        return entries <= self._inline_entries

    def _set_writable(self, writable: bool) -> None:
        self.writable = writable
        metrics.STORE_WRITABLE.set(1 if writable else 0)
        self.on_writable(writable)

    async def stage(self, room: str, entries: list[LogEntry]) -> None:
        """Durably keep history from a snapshot's sender aside (see `LogStore.stage`)."""
        await self._on_writer(self.store.stage, room, entries)

    async def prune(
        self, room: str, before_seq: int, before_ts_ms: int, held: int = MAX_HELD
    ) -> int:
        """Retention's deletes (see `LogStore.prune`), in line with the writes."""
        return await self._on_writer(self.store.prune, room, before_seq, before_ts_ms, held)

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

    async def annotations(
        self, room: str, first_seq: int, last_seq: int, upto: int
    ) -> list[LogEntry]:
        """Stored edits, unsends and reactions (see `LogStore.annotations`)."""
        return await self._read(
            room, lambda: self.store.annotations(room, first_seq, last_seq, upto)
        )

    async def close(self) -> None:
        """Close the store once every queued call is done."""
        self._readers.shutdown(wait=True)
        await self._on_writer(self.store.close)
        self._executor.shutdown(wait=True)
