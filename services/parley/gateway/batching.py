"""Batching of concurrent calls to one node: while one batch is in flight the
next one accumulates, so the batch grows with the load and an idle gateway
still sends at once.

A gRPC call costs as much as ~40 WebSocket deliveries (DESIGN §5a): one call
per message, or per join in a reconnect storm of thousands, would cap the
gateway (and make the node spend its core on call overhead) far below what
the work itself costs.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from typing import Generic, TypeVar

import grpc

from parley.observability import tracing
from parley.observability.log import get_logger
from parley.room.errors import Unavailable

log = get_logger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")

MAX_BATCH = 256
"""Most items in one call."""
BATCH_TIMEOUT = 3.0
"""Seconds one batch call may take before its items are retried."""


class Pending(Generic[Item, Result]):
    """A queued item: the request, its caller's future, and its caller's
    trace carrier (so the batch call can continue the caller's trace)."""

    __slots__ = ("carrier", "future", "item")

    def __init__(self, item: Item) -> None:
        self.item = item
        self.future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self.carrier = tracing.current_carrier()


class Batcher(ABC, Generic[Item, Result]):
    """Ships the items queued for one node in batches, one call in flight.

    A subclass says how one batch travels (`_call`); a batch's failure fails
    each of its items with the call's AioRpcError, or Unavailable (the
    router then retries them).
    """

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self._pending: list[Pending[Item, Result]] = []
        self._task: asyncio.Task[None] | None = None

    def submit(self, item: Item) -> asyncio.Future[Result]:
        """Queue one item; the future gets its result or the call's error."""
        pending: Pending[Item, Result] = Pending(item)
        self._pending.append(pending)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"{type(self).__name__}-{self.node_id}"
            )
        return pending.future

    async def close(self) -> None:
        """Stop shipping; queued items fail with CancelledError."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for pending in self._pending:
            pending.future.cancel()
        self._pending.clear()

    @abstractmethod
    async def _call(self, batch: list[Pending[Item, Result]]) -> list[Result]:
        """One call carrying the batch: a result per item, in order."""

    async def _run(self) -> None:
        try:
            while self._pending:
                batch = self._pending[:MAX_BATCH]
                del self._pending[:MAX_BATCH]
                await self._ship(batch)
        finally:
            self._task = None

    async def _ship(self, batch: list[Pending[Item, Result]]) -> None:
        try:
            results = await self._call(batch)
        except Exception as error:
            if isinstance(error, grpc.aio.AioRpcError):
                failure: Exception = error
            else:  # (a late answer, a replaced channel, a node gone: try again)
                if not isinstance(error, KeyError | TimeoutError | Unavailable):
                    log.error("batch call failed", node=self.node_id, exc_info=True)
                failure = Unavailable(f"{self.node_id}: the call failed")
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(failure)
            return
        if len(results) != len(batch):
            log.error(
                "a batch call answered the wrong number of results",
                node=self.node_id,
                sent=len(batch),
                got=len(results),
            )
        for index, pending in enumerate(batch):
            if pending.future.done():
                continue
            if index < len(results):
                pending.future.set_result(results[index])
            else:
                pending.future.set_exception(Unavailable(f"{self.node_id}: no result"))
