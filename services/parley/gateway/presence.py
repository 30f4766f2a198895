"""Reports local users going online or offline in a room to its administrator.

Changes are coalesced per room and sent in one UpdatePresence call; while a
call is in flight new changes accumulate for the next one.
"""

from __future__ import annotations

import asyncio

from parley._generated import room_service_pb2 as pb
from parley.gateway.room_client import RoomClient
from parley.gateway.router import Router
from parley.observability.log import get_logger
from parley.protocol.errors import ProtocolError

log = get_logger(__name__)

REPORT_DEADLINE = 5.0
"""Seconds a report may retry; after that the next Subscribe carries the truth anyway."""


class PresenceReporter:
    """Sends UpdatePresence for rooms with pending changes, one task per such room."""

    def __init__(self, router: Router, gateway_id: str) -> None:
        self._room_service = RoomClient(router)
        self.gateway_id = gateway_id
        self._pending: dict[str, dict[str, bool]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def report(self, room: str, user: str, online: bool) -> None:
        """Queue a change; a later change of the same user replaces an unsent one."""
        changes = self._pending.setdefault(room, {})
        # Re-insert so the dict keeps the order in which the changes happened.
        changes.pop(user, None)
        changes[user] = online
        if room not in self._tasks:
            self._tasks[room] = asyncio.get_running_loop().create_task(
                self._flush(room), name=f"presence-{room}"
            )

    def drop(self, room: str) -> None:
        """Forget unsent changes of a room that no longer exists."""
        self._pending.pop(room, None)

    async def close(self) -> None:
        """Stop reporting; unsent changes are dropped (ending Subscribe ends presence)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._pending.clear()

    async def _flush(self, room: str) -> None:
        try:
            while changes := self._pending.pop(room, None):
                request = pb.UpdatePresenceRequest(
                    room=room,
                    gateway_id=self.gateway_id,
                    changes=[pb.PresenceChange(user=u, online=o) for u, o in changes.items()],
                )
                try:
                    await self._room_service.update_presence(request, deadline=REPORT_DEADLINE)
                except ProtocolError as error:
                    log.info("presence report failed", room=room, code=error.code, error=str(error))
        finally:
            self._tasks.pop(room, None)
