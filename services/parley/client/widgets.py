"""Widgets of the chat screen: the message log, the member sidebar, one room's view."""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Static

from parley.client.connection import normalize_member
from parley.client.events import Entry
from parley.client.format import clock

# Colours for other people's names, picked by a stable hash so a name keeps
# its colour across sessions and machines.
_NAME_COLOURS = (
    "#e5c07b",
    "#61afef",
    "#c678dd",
    "#56b6c2",
    "#e06c75",
    "#d19a66",
    "#98c379",
    "#ff79c6",
)


def name_colour(user: str) -> str:
    """A stable colour for a user name."""
    return _NAME_COLOURS[zlib.crc32(user.encode()) % len(_NAME_COLOURS)]


class MessageLine(Static):
    """One entry of the log: a message or a join/leave line, with seq and time."""

    DEFAULT_CSS = """
    MessageLine { padding: 0 1; }
    MessageLine.own { background: $primary 12%; }
    MessageLine.presence { color: $text-muted; }
    """

    def __init__(self, entry: Entry, me: str) -> None:
        self.entry = entry
        own = entry.kind == "message" and entry.user == me
        classes = "own" if own else ("presence" if entry.kind == "presence" else "")
        super().__init__(self._render_text(entry, own), classes=classes)

    @staticmethod
    def _render_text(entry: Entry, own: bool) -> Text:
        # Text objects, not markup: user text must never be parsed as markup.
        line = Text()
        line.append(clock(entry.time), style="dim")
        line.append(" ")
        if entry.kind == "presence":
            verb = {"join": "joined the room", "leave": "left the room"}.get(
                entry.event, entry.event
            )
            line.append(f"→ {entry.user} {verb}", style="italic")
        else:
            colour = "bold #98c379" if own else f"bold {name_colour(entry.user)}"
            line.append(entry.user, style=colour)
            line.append("  ")
            line.append(entry.text)
        return line


class SystemLine(Static):
    """A line from the client itself: reconnects, errors, deletions."""

    DEFAULT_CSS = """
    SystemLine { padding: 0 1; color: $warning; text-style: italic; }
    SystemLine.error { color: $error; }
    SystemLine.info { color: $text-muted; }
    """

    def __init__(self, text: str, kind: str = "warning") -> None:
        super().__init__(Text(f"── {text}"), classes=kind)


class MessageLog(VerticalScroll):
    """The scrolling list of lines; posts `AtTop` when scrolled to the very top."""

    DEFAULT_CSS = """
    MessageLog { height: 1fr; scrollbar-size-vertical: 1; }
    MessageLog > #top-marker { color: $text-muted; text-align: center; width: 1fr; }
    """

    class AtTop(Message):
        """The user scrolled to the top: time to load older history."""

    def compose(self) -> ComposeResult:
        yield Static("▲ scroll up or PgUp for older messages", id="top-marker")

    def on_mount(self) -> None:
        """Stick to the newest line until the user scrolls away (and again once back)."""
        self.anchor()

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        """Notice arriving at the top (not layout settling while everything fits)."""
        super().watch_scroll_y(old_value, new_value)
        if new_value <= 0 < old_value and self.max_scroll_y > 0:
            self.post_message(self.AtTop())

    def on_mouse_scroll_up(self) -> None:
        """Scrolling up while already at the top asks for older lines too."""
        if self.scroll_y <= 0:
            self.post_message(self.AtTop())


class MemberList(Static):
    """The sidebar: members with an online dot, online ones first."""

    DEFAULT_CSS = """
    MemberList {
        width: 24; height: 1fr; padding: 0 1;
        border-left: vkey $primary 40%;
    }
    """

    def __init__(self) -> None:
        super().__init__("", classes="sidebar")
        self.members: dict[str, bool] = {}

    def set_members(self, members: Iterable[Any]) -> None:
        """Replace the list from a `joined` or `members` reply."""
        previous = self.members
        self.members = {}
        for member in members:
            info = normalize_member(member)
            online = info["online"] if isinstance(member, dict) else previous.get(info["user"])
            self.members[info["user"]] = bool(online)
        self._draw()

    def add(self, user: str) -> None:
        """A member joined."""
        self.members.setdefault(user, False)
        self._draw()

    def remove_member(self, user: str) -> None:
        """A member left."""
        self.members.pop(user, None)
        self._draw()

    def set_online(self, user: str, online: bool) -> None:
        """A member came online or went offline."""
        if user in self.members or online:
            self.members[user] = online
            self._draw()

    def _draw(self) -> None:
        text = Text()
        text.append(f"Members ({len(self.members)})\n", style="bold")
        for user, online in sorted(self.members.items(), key=lambda kv: (not kv[1], kv[0])):
            text.append("● " if online else "○ ", style="green" if online else "dim")
            text.append(f"{user}\n", style="" if online else "dim")
        self.update(text)


class RoomView(Horizontal):
    """One open room: its message log and its member sidebar."""

    DEFAULT_CSS = """
    RoomView { height: 1fr; }
    """

    def __init__(self, room: str, me: str) -> None:
        super().__init__()
        self.room = room
        self.me = me
        self.seqs: set[int] = set()
        """Seqs shown, so a history page that overlaps live entries repeats nothing."""
        self.oldest: int | None = None
        self.newest: int | None = None
        self.loading_older = False
        self.at_beginning = False
        """Set when a history page came back empty: nothing older to ask for."""
        self.deleted = False
        self.log_view = MessageLog()
        self.sidebar = MemberList()

    def compose(self) -> ComposeResult:
        yield self.log_view
        yield self.sidebar

    @property
    def has_older(self) -> bool:
        """True while entries older than the oldest shown may exist."""
        return not self.at_beginning and (self.oldest is None or self.oldest > 1)

    def add_entry(self, entry: Entry) -> bool:
        """Append a live entry; False if it was already shown."""
        if entry.seq in self.seqs:
            return False
        self.seqs.add(entry.seq)
        self.oldest = entry.seq if self.oldest is None else min(self.oldest, entry.seq)
        self.newest = entry.seq if self.newest is None else max(self.newest, entry.seq)
        self.log_view.mount(MessageLine(entry, self.me))
        if entry.seq == 1:
            self.mark_top(f"— the beginning of #{self.room} —")
        if entry.kind == "presence":
            if entry.event == "join":
                self.sidebar.add(entry.user)
            elif entry.event == "leave":
                self.sidebar.remove_member(entry.user)
        return True

    def add_system(self, text: str, kind: str = "warning") -> None:
        """Append a client-side notice."""
        self.log_view.mount(SystemLine(text, kind))

    async def prepend(self, entries: list[Entry]) -> int:
        """Insert older entries above what is shown, keeping the view still.

        Returns:
            How many entries were new.
        """
        fresh = [e for e in sorted(entries, key=lambda e: e.seq) if e.seq not in self.seqs]
        if not fresh:
            return 0
        for entry in fresh:
            self.seqs.add(entry.seq)
        self.oldest = min(self.seqs)
        if self.oldest <= 1:
            self.mark_top(f"— the beginning of #{self.room} —")
        log = self.log_view
        before_height = log.virtual_size.height
        before_y = log.scroll_y
        marker = log.query_one("#top-marker")
        await log.mount_all([MessageLine(e, self.me) for e in fresh], after=marker)

        def keep_position() -> None:
            grown = log.virtual_size.height - before_height
            log.scroll_to(y=before_y + max(grown, 0), animate=False)

        log.call_after_refresh(keep_position)
        return len(fresh)

    def mark_top(self, text: str) -> None:
        """Change the marker at the top (e.g. when the beginning is reached)."""
        self.log_view.query_one("#top-marker", Static).update(text)


class TopBar(Static):
    """One line at the top: app title, what this screen shows, connection state.

    (Textual's Header misbehaves in screens installed before they are shown.)
    """

    DEFAULT_CSS = """
    TopBar {
        dock: top; height: 1; width: 1fr; padding: 0 1;
        background: $panel; color: $foreground;
    }
    """

    def on_mount(self) -> None:
        """Redraw whenever a title changes."""
        for obj in (self.app, self.screen):
            self.watch(obj, "title", self._redraw, init=False)
            self.watch(obj, "sub_title", self._redraw, init=False)
        self._redraw()

    def _redraw(self, *_: object) -> None:
        state = self.app.sub_title
        text = Text()
        text.append(self.app.title, style="bold")
        if self.screen.sub_title:
            text.append("  ")
            text.append(self.screen.sub_title, style="bold cyan")
        text.append("  ")
        colour = "yellow" if "reconnect" in state else ("red" if "disconnect" in state else "dim")
        text.append(state, style=colour)
        self.update(text)
