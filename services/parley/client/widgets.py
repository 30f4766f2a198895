"""Widgets of the chat screen: the message log, the member sidebar, one room's view."""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterable
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.timer import Timer
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


TYPING_SHOWN = 4.0
"""Seconds "… is typing" stays after the last signal (senders repeat every 2-3 s)."""


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
        self.own = entry.kind == "message" and entry.user == me
        # as the message stands (a history page has edits, unsends and
        # reactions folded in; live ones arrive as entries of their own)
        self.text = entry.text
        self.edited = bool(entry.frame.get("edited"))
        self.unsent = bool(entry.frame.get("unsent"))
        reactions = entry.frame.get("reactions")
        self.reactions: dict[str, list[str]] = (
            {str(k): [str(u) for u in v] for k, v in reactions.items()}
            if isinstance(reactions, dict)
            else {}
        )
        classes = "own" if self.own else ("presence" if entry.kind == "presence" else "")
        super().__init__(self._render_text(), classes=classes)

    def apply(self, about: Entry) -> None:
        """An edit, unsend or reaction of this message arrived."""
        if self.unsent:
            return  # (an unsent message stays unsent)
        if about.kind == "edit":
            self.text, self.edited = about.text, True
        elif about.kind == "unsent":
            self.text, self.unsent, self.reactions = "", True, {}
        elif about.kind == "reaction":
            emoji, user = str(about.frame.get("emoji", "")), about.user
            users = self.reactions.setdefault(emoji, [])
            if about.frame.get("on") and user not in users:
                users.append(user)
            elif not about.frame.get("on") and user in users:
                users.remove(user)
            if not users:
                del self.reactions[emoji]
        self.update(self._render_text())

    def _render_text(self) -> Text:
        # Text objects, not markup: user text must never be parsed as markup.
        entry = self.entry
        line = Text()
        line.append(clock(entry.time), style="dim")
        line.append(" ")
        if entry.kind == "presence":
            verb = {"join": "joined the room", "leave": "left the room"}.get(
                entry.event, entry.event
            )
            line.append(f"→ {entry.user} {verb}", style="italic")
            return line
        colour = "bold #98c379" if self.own else f"bold {name_colour(entry.user)}"
        line.append(entry.user, style=colour)
        line.append("  ")
        if self.unsent:
            line.append("message unsent", style="dim italic")
            return line
        line.append(self.text)
        if self.edited:
            line.append(" (edited)", style="dim")
        for emoji, users in self.reactions.items():
            line.append(f"  {emoji} {len(users)}", style="bold")
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
    RoomView > Vertical { width: 1fr; height: 1fr; }
    RoomView .typing { height: 1; padding: 0 1; color: $text-muted; text-style: italic; }
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
        self.typing_line = Static("", classes="typing")
        self.lines: dict[int, MessageLine] = {}
        """The message lines shown, by seq (edits and reactions update them)."""
        self._typing: dict[str, float] = {}
        self._typing_timer: Timer | None = None

    def compose(self) -> ComposeResult:
        with Vertical():
            yield self.log_view
            yield self.typing_line
        yield self.sidebar

    def last_own(self) -> MessageLine | None:
        """The newest message of mine still standing (what Up edits)."""
        for seq in sorted(self.lines, reverse=True):
            line = self.lines[seq]
            if line.own and not line.unsent:
                return line
        return None

    def last_message(self) -> MessageLine | None:
        """The newest message still standing (what /react reacts to)."""
        for seq in sorted(self.lines, reverse=True):
            if not self.lines[seq].unsent:
                return self.lines[seq]
        return None

    def typing(self, user: str) -> None:
        """`user` is typing: say so for TYPING_SHOWN seconds."""
        self._typing[user] = time.monotonic() + TYPING_SHOWN
        self._draw_typing()
        if self._typing_timer is None:
            self._typing_timer = self.set_interval(1.0, self._draw_typing)

    def _draw_typing(self) -> None:
        now = time.monotonic()
        self._typing = {u: t for u, t in self._typing.items() if t > now}
        users = sorted(self._typing)
        if not users:
            text = ""
            if self._typing_timer is not None:
                self._typing_timer.stop()
                self._typing_timer = None
        elif len(users) == 1:
            text = f"{users[0]} is typing…"
        else:
            text = f"{', '.join(users)} are typing…"
        self.typing_line.update(text)

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
        if entry.target is not None:
            # about a message: shown on it (one not loaded here needs nothing)
            target = self.lines.get(entry.target)
            if target is not None:
                target.apply(entry)
            return True
        line = MessageLine(entry, self.me)
        if entry.kind == "message":
            self.lines[entry.seq] = line
            self._typing.pop(entry.user, None)
        self.log_view.mount(line)
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
        # (a history page has its edits and reactions folded into the messages)
        fresh = [e for e in fresh if e.target is None]
        self.oldest = min(self.seqs)
        if self.oldest <= 1:
            self.mark_top(f"— the beginning of #{self.room} —")
        log = self.log_view
        before_height = log.virtual_size.height
        before_y = log.scroll_y
        marker = log.query_one("#top-marker")
        lines = [MessageLine(e, self.me) for e in fresh]
        for line in lines:
            if line.entry.kind == "message":
                self.lines[line.entry.seq] = line
        await log.mount_all(lines, after=marker)

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
