"""The node's one store writer: every store write, on one worker thread.

Stores block (sqlite fsyncs); the event loop must not. One thread keeps the
writes in order and never concurrent, as `LogStore` requires; reads of
history (older than a replica's in-memory tail) run on their own threads
beside it, so a page of history never waits behind an fsync.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from parley.observability.log import get_logger
from parley.room.entries import LogEntry
from parley.room.records import RoomRecord, RoomWrite
from parley.room.store import LogStore

log = get_logger("parley.node.store")


class StoreWriter:
    """Runs a LogStore's blocking calls off the event loop, one at a time."""

    def __init__(self, store: LogStore, name: str) -> None:
        self.store = store
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"store-{name}")
        self._readers = ThreadPoolExecutor(2, thread_name_prefix=f"read-{name}")

    async def load(self) -> dict[str, RoomRecord]:
        """Every stored room replica."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.store.load)

    async def write(self, batch: Sequence[RoomWrite]) -> None:
        """Make a batch durable; a node that cannot write exits rather than
        acknowledge anything it does not hold."""
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self.store.write, batch)
        except Exception:
            log.critical("store write failed; exiting", exc_info=True)
            raise SystemExit(70) from None

    async def stage(self, room: str, entries: list[LogEntry]) -> None:
        """Durably keep history from a snapshot's sender aside (see `LogStore.stage`)."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self.store.stage, room, entries)

    async def entries(self, room: str, after: int, upto: int, limit: int) -> list[LogEntry]:
        """Stored entries after < index <= upto (see `LogStore.entries`)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._readers, self.store.entries, room, after, upto, limit
        )

    async def visible_before(
        self, room: str, before_seq: int | None, upto: int, limit: int
    ) -> list[LogEntry]:
        """A history page from the store (see `LogStore.visible_before`)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._readers, self.store.visible_before, room, before_seq, upto, limit
        )

    async def visible_from(self, room: str, from_seq: int, upto: int, limit: int) -> list[LogEntry]:
        """A backlog page from the store (see `LogStore.visible_from`)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._readers, self.store.visible_from, room, from_seq, upto, limit
        )

    async def close(self) -> None:
        """Close the store once every queued call is done."""
        loop = asyncio.get_running_loop()
        self._readers.shutdown(wait=True)
        await loop.run_in_executor(self._executor, self.store.close)
        self._executor.shutdown(wait=True)
