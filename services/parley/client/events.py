"""Events the connection hands to its users (the chat app, `parley tail`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal


@dataclass(frozen=True)
class Entry:
    """One committed room entry (a message or a join/leave), delivered in seq order."""

    room: str
    seq: int
    frame: dict[str, Any] = field(compare=False)
    """The frame exactly as the gateway sent it (what `tail --json` prints)."""

    @property
    def kind(self) -> Literal["message", "presence", "edit", "unsent", "reaction"]:
        """`message` for chat text, `presence` for join/leave entries, and
        `edit`, `unsent` or `reaction` for entries about an earlier message."""
        kind = self.frame.get("type")
        if kind == "edit" or kind == "unsent" or kind == "reaction":
            return "edit" if kind == "edit" else "unsent" if kind == "unsent" else "reaction"
        if kind == "presence" or ("text" not in self.frame and "event" in self.frame):
            return "presence"
        return "message"

    @property
    def target(self) -> int | None:
        """The seq of the message an edit, unsend or reaction is about."""
        target = self.frame.get("target")
        return target if isinstance(target, int) else None

    @property
    def user(self) -> str:
        """Who wrote the message, joined/left, edited, unsent or reacted."""
        return str(self.frame.get("from") or self.frame.get("user") or self.frame.get("by") or "?")

    @property
    def text(self) -> str:
        """The message text ("" for presence entries)."""
        return str(self.frame.get("text", ""))

    @property
    def event(self) -> str:
        """`join` or `leave` for presence entries, "" otherwise."""
        return str(self.frame.get("event", ""))

    @property
    def time(self) -> datetime | None:
        """When the entry was committed, in local time, if the frame says."""
        return parse_ts(self.frame.get("ts"))


@dataclass(frozen=True)
class Online:
    """A member of a room came online or went offline (not a log entry)."""

    room: str
    user: str
    online: bool


@dataclass(frozen=True)
class Deleted:
    """The room was deleted by its owner; nothing more will arrive for it."""

    room: str


@dataclass(frozen=True)
class Status:
    """The connection changed state, or something worth telling the user happened."""

    state: Literal["connected", "reconnecting", "resumed", "gap", "error", "closed"]
    message: str
    room: str | None = None
    reason: str = ""
    """Why a `closed` happened: "unauthorized" when a reconnect was refused (HTTP 401)."""


@dataclass(frozen=True)
class Notice:
    """Something for this user that is not an entry: `typing` (in a joined
    room), `mention`, `invitation` or `read` (from any room)."""

    kind: str
    room: str
    frame: dict[str, Any] = field(compare=False)

    @property
    def user(self) -> str:
        """Who is typing, mentioned you or invited you."""
        return str(self.frame.get("user") or self.frame.get("from") or "")


Event = Entry | Online | Deleted | Status | Notice


def parse_ts(value: object) -> datetime | None:
    """Parse an RFC 3339 timestamp into local time; None when absent or malformed."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed
    return parsed.astimezone()
