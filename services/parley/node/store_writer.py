"""The node's one store writer: every store call, on one worker thread.

Stores block (sqlite fsyncs); the event loop must not. One thread keeps the
calls in order and never concurrent, as `LogStore` requires.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from parley.observability.log import get_logger
from parley.room.entries import RoomRecord, RoomWrite
from parley.room.store import LogStore

log = get_logger("parley.node.store")


class StoreWriter:
    """Runs a LogStore's blocking calls off the event loop, one at a time."""

    def __init__(self, store: LogStore, name: str) -> None:
        self.store = store
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"store-{name}")

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

    async def close(self) -> None:
        """Close the store once every queued call is done."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self.store.close)
        self._executor.shutdown(wait=True)
