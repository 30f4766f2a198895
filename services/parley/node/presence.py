"""Who is online in the rooms this node administers, as gateways report it.

Presence lives in the administrator's memory only: it is rebuilt from the
gateways' reports (each Subscribe names the users online there) after a
failover, and never written to the log.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class RoomPresence:
    """One room's online users, per gateway."""

    by_gateway: dict[str, set[str]] = field(default_factory=dict)

    def online(self, user: str) -> bool:
        return any(user in users for users in self.by_gateway.values())


class PresenceBook:
    """Every administered room's presence; `announce(room, user, online)` is
    called whenever a user's overall state in a room changes."""

    def __init__(self, announce: Callable[[str, str, bool], None]) -> None:
        self._rooms: dict[str, RoomPresence] = {}
        self._announce = announce

    def online(self, room: str, user: str) -> bool:
        """True when some gateway reports the user online in the room."""
        presence = self._rooms.get(room)
        return presence is not None and presence.online(user)

    def change(self, room: str, gateway_id: str, user: str, online: bool) -> None:
        """Apply one gateway's report about one user."""
        presence = self._rooms.setdefault(room, RoomPresence())
        before = presence.online(user)
        users = presence.by_gateway.setdefault(gateway_id, set())
        if online:
            users.add(user)
        else:
            users.discard(user)
        after = presence.online(user)
        if before != after:
            self._announce(room, user, after)

    def gateway_gone(self, room: str, gateway_id: str) -> None:
        """A gateway's stream ended: its users are offline unless elsewhere."""
        presence = self._rooms.get(room)
        if presence is None:
            return
        for user in presence.by_gateway.pop(gateway_id, set()):
            if not presence.online(user):
                self._announce(room, user, False)

    def forget(self, room: str) -> None:
        """This node no longer administers the room."""
        self._rooms.pop(room, None)
