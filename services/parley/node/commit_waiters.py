"""Publishers waiting for their entries to commit, per room, in log order."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Any

from parley.room.entries import LogEntry
from parley.room.errors import NotAdministrator
from parley.room.replica import RoomReplica


@dataclass(slots=True, eq=False)
class _Waiter:
    index: int
    epoch: int
    # resolves with the entry (a proposal), or with None (a barrier)
    future: asyncio.Future[Any]
    wants_entry: bool


class CommitWaiters:
    """Futures that resolve when an index commits in the reign that proposed it."""

    def __init__(self) -> None:
        self._rooms: dict[str, deque[_Waiter]] = {}

    def wait(self, replica: RoomReplica, index: int) -> asyncio.Future[LogEntry]:
        """A future for the entry at index (a proposal, so not committed
        yet), once committed in this reign."""
        future: asyncio.Future[LogEntry] = asyncio.get_running_loop().create_future()
        if replica.commit_index >= index:
            future.set_result(replica.entry(index))
            return future
        self._add(replica, _Waiter(index, replica.epoch, future, wants_entry=True))
        return future

    def barrier(self, replica: RoomReplica, index: int) -> asyncio.Future[None]:
        """A future that resolves once index is committed in this reign
        (at once if it is: the entry may be folded out of memory by now)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if replica.commit_index >= index:
            future.set_result(None)
            return future
        self._add(replica, _Waiter(index, replica.epoch, future, wants_entry=False))
        return future

    def _add(self, replica: RoomReplica, waiter: _Waiter) -> None:
        index = waiter.index
        waiters = self._rooms.setdefault(replica.room, deque())
        if waiters and waiters[-1].index > index:
            # keep the queue ordered by index (barriers may ask for older ones)
            ordered = sorted([*waiters, waiter], key=lambda w: w.index)
            waiters.clear()
            waiters.extend(ordered)
        else:
            waiters.append(waiter)

    def committed(self, replica: RoomReplica) -> None:
        """Resolve every waiter up to the replica's commit index.

        An entry committed at a waited index but of another epoch means the
        proposal was replaced by a newer administrator's entry: it failed.
        """
        waiters = self._rooms.get(replica.room)
        if waiters is None:
            return
        while waiters and waiters[0].index <= replica.commit_index:
            waiter = waiters.popleft()
            if waiter.future.done():
                continue
            # (resolved in the Ready that committed it: still in memory)
            entry = replica.entry(waiter.index)
            if entry.epoch == waiter.epoch:
                waiter.future.set_result(entry if waiter.wants_entry else None)
            else:
                waiter.future.set_exception(NotAdministrator(replica.room, replica.administrator))
        if not waiters:
            # an empty deque is ~600 bytes: an idle room keeps none
            del self._rooms[replica.room]

    def fail(self, room: str, err: Exception) -> None:
        """This node's reign over the room ended: every waiter fails."""
        for waiter in self._rooms.pop(room, deque()):
            if not waiter.future.done():
                waiter.future.set_exception(err)
