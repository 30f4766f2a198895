"""The node's Ready loop: the one driver of the room engine.

persist → send → apply, strictly, as `parley.room.engine` requires and the
simulation checks on the same engine object:

1. take `engine.ready()`;
2. send its eager appends (an administrator's entries of an epoch already
   on disk: it counts itself only once its own write is durable);
3. write its writes through the store writer and wait until durable;
4. `engine.advance(ready)`;
5. send its other messages: vote requests, votes, append answers (these
   resolve the peers' waiting RPCs), appends of a just-durable epoch;
6. apply: committed entries, role changes, confirmed reads.

Inputs meanwhile (RPCs, proposals, ticks) go into the engine and ride in
the next Ready: that is the group commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from parley.observability.log import get_logger
from parley.room.engine import Outbound, PeerBody, Ready, RoomEngine

from .store_writer import StoreWriter

log = get_logger("parley.node.engine")


def now_ms() -> int:
    """Wall-clock milliseconds (entry timestamps and protocol timers)."""
    return time.time_ns() // 1_000_000


class EngineLoop:
    """Runs a RoomEngine's Ready loop over a store writer and a transport.

    Args:
        engine: the node's engine; every input to it must be followed by `kick()`.
        store: where writes become durable.
        send: hands appends and vote requests to the peer transport.
        apply: takes each Ready once its messages are out (committed
            entries, role changes, reads).
    """

    def __init__(
        self,
        engine: RoomEngine,
        store: StoreWriter,
        send: Callable[[list[Outbound]], None],
        apply: Callable[[Ready], None],
    ) -> None:
        self.engine = engine
        self.store = store
        self.send = send
        self.apply = apply
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._token = 0
        self._answers: dict[int, asyncio.Future[PeerBody]] = {}
        self._idle = asyncio.Event()
        self._idle.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="engine")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for future in self._answers.values():
            if not future.done():
                future.cancel()
        self._answers.clear()

    def kick(self) -> None:
        """Something was fed to the engine: run the loop."""
        self._wakeup.set()

    def answer_token(self) -> tuple[int, asyncio.Future[PeerBody]]:
        """A token for a peer request given to the engine, and the future of
        its answer, which resolves only once the answer may leave."""
        self._token += 1
        future: asyncio.Future[PeerBody] = asyncio.get_running_loop().create_future()
        self._answers[self._token] = future
        return self._token, future

    async def settled(self) -> None:
        """Wait until the loop has processed every input given so far."""
        while self.engine.has_ready() or not self._idle.is_set():
            self.kick()
            await self._idle.wait()
            await asyncio.sleep(0)

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            self._idle.clear()
            try:
                while self.engine.has_ready():
                    await self._step()
            finally:
                self._idle.set()

    async def _step(self) -> None:
        ready = self.engine.ready(now_ms())
        if ready.eager:
            self._send(ready.eager)
            # let the peer senders put the appends on the wire before the
            # write, which may block this thread (store_writer.py)
            await asyncio.sleep(0)
        if ready.writes:
            # An administrator that has just sent appends writes on the
            # writer thread, never inline: blocked in its own fsync, its loop
            # could not read the first follower's answer, which commits the
            # entry (commit latency -0.25 ms at R = 3, one message in flight)
            await self.store.write(ready.writes, inline=not ready.eager)
        self.engine.advance(ready)
        if ready.messages:
            self._send(ready.messages)
        try:
            self.apply(ready)
        except Exception:
            # what failed was delivery to local waiters; the engine is sound
            log.error("applying a ready batch failed", exc_info=True)

    def _send(self, messages: list[Outbound]) -> None:
        outgoing = []
        for message in messages:
            if message.reply_to:
                future = self._answers.pop(message.reply_to, None)
                if future is not None and not future.done():
                    future.set_result(message.body)
            else:
                outgoing.append(message)
        if outgoing:
            self.send(outgoing)
