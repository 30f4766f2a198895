"""Notifications for a user rather than a room, to every gateway.

An invitation, a mention or a moved read marker concerns a user's
connections wherever they are, joined to the room or not, and a node does
not know which gateways those are. Every gateway keeps a `Notifications`
stream open to every node; the node that has something for a user puts it on
all of them, and each gateway passes it to that user's connections (if it
has any). They are rare, small and not stored: a gateway that is
reconnecting misses them, and what they announce stays in the rooms (the
invitation lets the user join, the mention is in the message, the marker is
in `rooms`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from parley._generated import room_service_pb2 as pb
from parley.observability.log import get_logger

log = get_logger(__name__)

QUEUE = 10_000
"""Notifications one gateway's stream may be behind before some are dropped."""


class NoticeHub:
    """The open Notifications streams of one node."""

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[pb.Notification]] = set()

    def publish(self, notice: pb.Notification) -> None:
        """Put a notification on every open stream."""
        for queue in self._queues:
            try:
                queue.put_nowait(notice)
            except asyncio.QueueFull:
                log.warning("a gateway's notifications are behind; dropped one", user=notice.user)

    def subscribe(self) -> asyncio.Queue[pb.Notification]:
        """A queue that gets every notification from now on (`unsubscribe` it)."""
        queue: asyncio.Queue[pb.Notification] = asyncio.Queue(QUEUE)
        self._queues.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[pb.Notification]) -> None:
        self._queues.discard(queue)

    async def stream(self, opened: Callable[[], Awaitable[None]]) -> AsyncIterator[pb.Notification]:
        """Notifications from now on, until the caller stops reading;
        `opened` runs once they are being collected (the stream's headers
        tell the gateway it misses nothing from then on)."""
        queue = self.subscribe()
        try:
            await opened()
            while True:
                yield await queue.get()
        finally:
            self.unsubscribe(queue)
