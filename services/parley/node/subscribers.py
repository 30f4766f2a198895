"""The Subscribe streams of the rooms this node administers (the hub).

Each committed entry is encoded once in its wire form and handed to every
stream of its room; the streams (in `rooms.RoomServicer.Subscribe`) drain
their own buffers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field

from parley._generated import room_service_pb2 as room_pb
from parley.room.codec import entry_to_client_pb
from parley.room.entries import EntryKind, LogEntry
from parley.room.errors import NotAdministrator, Unavailable


@dataclass(slots=True, eq=False)
class Subscriber:
    """One Subscribe stream of one gateway for one room."""

    room: str
    gateway_id: str
    next_seq: int
    # entries in their wire form, encoded once for every subscriber of the room
    entries: list[room_pb.Entry] = field(default_factory=list)
    presence: list[tuple[str, bool]] = field(default_factory=list)
    typing: list[str] = field(default_factory=list)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    # set when the stream must end with this error (the administrator changed)
    ended: NotAdministrator | Unavailable | None = None
    # set when the room was deleted: the stream ends OK after its entries
    closed: bool = False

    def push(self, entry: room_pb.Entry) -> None:
        if entry.seq >= self.next_seq:
            self.entries.append(entry)
            self.next_seq = entry.seq + 1
            self.wakeup.set()

    def end(self, err: NotAdministrator | Unavailable) -> None:
        self.ended = err
        self.wakeup.set()


class SubscriberHub:
    """Every Subscribe stream of this node, by room."""

    def __init__(self) -> None:
        self._rooms: dict[str, set[Subscriber]] = {}

    def add(self, sub: Subscriber) -> None:
        self._rooms.setdefault(sub.room, set()).add(sub)

    def remove(self, sub: Subscriber) -> None:
        subs = self._rooms.get(sub.room)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._rooms[sub.room]

    def has_gateway(self, room: str, gateway_id: str) -> bool:
        """True while some stream of that gateway follows the room."""
        return any(s.gateway_id == gateway_id for s in self._rooms.get(room, ()))

    def rooms(self) -> Iterable[str]:
        return self._rooms.keys()

    def deliver(self, room: str, committed: list[LogEntry]) -> None:
        """Hand newly committed entries to the room's streams."""
        subs = self._rooms.get(room)
        if not subs:
            return
        for entry in committed:
            if entry.visible:
                wire = entry_to_client_pb(entry)
                for sub in subs:
                    sub.push(wire)
        if any(e.kind is EntryKind.DELETE for e in committed):
            for sub in subs:
                sub.closed = True
                sub.wakeup.set()

    def presence(self, room: str, user: str, online: bool) -> None:
        """Tell the room's streams that a user came online or went offline."""
        for sub in self._rooms.get(room, ()):
            sub.presence.append((user, online))
            sub.wakeup.set()

    def typing(self, room: str, user: str) -> None:
        """Tell the room's streams that a member is typing."""
        for sub in self._rooms.get(room, ()):
            if user not in sub.typing:
                sub.typing.append(user)
                sub.wakeup.set()

    def end_room(self, room: str, err: NotAdministrator | Unavailable) -> None:
        """End every stream of the room with an error."""
        for sub in self._rooms.pop(room, set()):
            sub.end(err)

    def end_all(self, err: Unavailable) -> None:
        for room in list(self._rooms):
            self.end_room(room, err)
