"""Plain-text rendering shared by `parley tail`, `parley rooms` and the chat app."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from parley.client.events import Entry

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
"""Room and user names (DESIGN §5); users are further limited to 32 characters."""

MAX_TEXT = 4000
"""Longest message text the protocol accepts."""


def valid_room(name: str) -> bool:
    """True when `name` is a legal room name."""
    return bool(NAME_RE.match(name))


def valid_user(name: str) -> bool:
    """True when `name` is a legal user name."""
    return bool(NAME_RE.match(name)) and len(name) <= 32


def clock(when: datetime | None) -> str:
    """HH:MM:SS in local time, or dashes when the time is unknown."""
    return when.strftime("%H:%M:%S") if when else "--:--:--"


def one_line(text: str) -> str:
    """Fold a multi-line message onto one line so each entry stays one line."""
    return " ⏎ ".join(text.splitlines()) if "\n" in text or "\r" in text else text


def entry_line(entry: Entry) -> str:
    """`[seq] HH:MM:SS user: text`, or `[seq] HH:MM:SS * user joined|left`
    (`edited #S: text`, `unsent #S`, `reacted 👍 to #S`, `took back 👍 on #S`)."""
    head = f"[{entry.seq}] {clock(entry.time)}"
    if entry.kind == "presence":
        verb = {"join": "joined", "leave": "left"}.get(entry.event, entry.event)
        return f"{head} * {entry.user} {verb}"
    if entry.kind == "edit":
        return f"{head} * {entry.user} edited #{entry.target}: {one_line(entry.text)}"
    if entry.kind == "unsent":
        return f"{head} * {entry.user} unsent #{entry.target}"
    if entry.kind == "reaction":
        emoji = entry.frame.get("emoji", "")
        if entry.frame.get("on"):
            return f"{head} * {entry.user} reacted {emoji} to #{entry.target}"
        return f"{head} * {entry.user} took back {emoji} on #{entry.target}"
    suffix = " (edited)" if entry.frame.get("edited") else ""
    if entry.frame.get("unsent"):
        return f"{head} {entry.user}: (unsent)"
    return f"{head} {entry.user}: {one_line(entry.text)}{suffix}"


def rooms_table(rooms: Sequence[dict[str, Any]]) -> str:
    """An aligned text table of the `rooms` reply (no trailing newline)."""
    header = ("ROOM", "OWNER", "MEMBERS", "LAST SEQ", "UNREAD", "ADMINISTRATOR")
    rows = [header] + [
        (
            f"@{r['with']}" if r.get("dm") and r.get("with") else str(r.get("room", "")),
            str(r.get("owner", "")),
            str(r.get("members", "")),
            str(r.get("last_seq", "")),
            str(r.get("unread", "-")),
            str(r.get("administrator", "") or "-"),
        )
        for r in sorted(rooms, key=lambda r: str(r.get("room", "")))
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    return "\n".join(lines)
