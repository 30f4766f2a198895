"""The chat screen: one tab per open room, an input line, unread counts."""

from __future__ import annotations

import contextlib
import time
from typing import cast

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Input, TabbedContent, TabPane

from parley.client.errors import ParleyError, ServerError
from parley.client.events import Entry, Notice
from parley.client.format import MAX_TEXT, valid_room, valid_user
from parley.client.screens.host import ChatHost
from parley.client.widgets import MessageLog, RoomView, TopBar
from parley.protocol.requests import dm_room

PLACEHOLDER = "Type a message — enter to send, ↑ edits your last, /help for commands"
TYPING_EVERY = 3.0
"""Seconds between the typing signals this client sends for one room."""

HISTORY_PAGE = 50
"""Entries fetched per "load older" step."""

SEND_RETRY_SECONDS = 30.0
"""A message typed while reconnecting is retried (same id: stored once) this long."""


def pane_id(room: str) -> str:
    """A widget id for a room's tab (ids may not start with a digit)."""
    return f"room-{room}"


class ChatScreen(Screen[None]):
    """Several rooms at once, switchable by key, with unread counts in the tabs."""

    DEFAULT_CSS = """
    ChatScreen TabbedContent { height: 1fr; }
    ChatScreen TabPane { padding: 0; }
    ChatScreen #message-input { dock: bottom; margin: 0 0 0 0; }
    ChatScreen.-narrow MemberList { display: none; }
    """
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (80, "-wide")]
    BINDINGS = [
        Binding("ctrl+n", "next_room", "Next room"),
        Binding("ctrl+p", "prev_room", "Prev room"),
        Binding("ctrl+r", "rooms", "Rooms"),
        Binding("ctrl+l", "close_room", "Close tab"),
        Binding("up", "edit_last", "Edit last", show=False),
        Binding("escape", "cancel_edit", "Cancel edit", show=False),
        Binding("pageup", "page_up", "Older", show=False),
        Binding("pagedown", "page_down", "Newer", show=False),
        Binding("f1", "app.help", "Help"),
        Binding("ctrl+q", "app.quit", "Quit"),
        *[Binding(f"alt+{n}", f"goto({n})", f"Room {n}", show=False) for n in range(1, 10)],
    ]

    def __init__(self) -> None:
        super().__init__(name="chat")
        self.views: dict[str, RoomView] = {}
        self.unread: dict[str, int] = {}
        self.editing: tuple[str, int] | None = None
        """(room, seq) of the message the input line is editing."""
        self._typing_sent: dict[str, float] = {}

    @property
    def parley(self) -> ChatHost:
        """The app, typed."""
        return cast("ChatHost", self.app)

    def compose(self) -> ComposeResult:
        yield TopBar()
        yield TabbedContent(id="tabs")
        yield Input(
            placeholder=PLACEHOLDER,
            id="message-input",
            max_length=MAX_TEXT,
        )
        yield Footer()

    def on_screen_resume(self) -> None:
        """Keep typing where you were."""
        self.query_one("#message-input", Input).focus()
        self._update_title()

    @property
    def tabs(self) -> TabbedContent:
        """The room tabs."""
        return self.query_one("#tabs", TabbedContent)

    @property
    def active_room(self) -> str | None:
        """The room whose tab is showing."""
        active = self.tabs.active
        return active.removeprefix("room-") if active else None

    def _update_title(self) -> None:
        room = self.active_room
        self.sub_title = f"#{room}" if room else "no room open"

    def _label(self, room: str) -> str:
        view = self.views.get(room)
        if view is not None and view.deleted:
            return f"{room} ✗"
        count = self.unread.get(room, 0)
        return f"{room} ({count})" if count else room

    def _relabel(self, room: str) -> None:
        # The tab may be going away; a label is cosmetic, never worth a crash.
        with contextlib.suppress(Exception):
            self.tabs.get_tab(pane_id(room)).label = self._label(room)

    # ------------------------------------------------------------------ rooms

    async def open_room(self, room: str) -> None:
        """Show `room` (joining it first if it is not open yet)."""
        if room in self.views:
            self.tabs.active = pane_id(room)
            return
        conn = self.parley.conn
        if conn is None:
            return
        view = RoomView(room, self.parley.user)
        self.views[room] = view
        self.unread[room] = 0
        await self.tabs.add_pane(TabPane(room, view, id=pane_id(room)))
        self.tabs.active = pane_id(room)
        self._update_title()
        try:
            joined = await conn.join(room)
        except ParleyError as exc:
            view.add_system(f"could not join {room}: {exc}", "error")
            if isinstance(exc, ServerError) and exc.code == "not_found":
                view.deleted = True
                self._relabel(room)
            return
        view.sidebar.set_members(joined.get("members") or [])
        self.load_members(room)

    @work(group="members")
    async def load_members(self, room: str) -> None:
        """Refresh the member sidebar (with online dots) of `room`."""
        conn = self.parley.conn
        view = self.views.get(room)
        if conn is None or view is None:
            return
        try:
            members = await conn.members(room)
        except ParleyError:
            return  # the join reply's list is still shown
        view.sidebar.set_members(members)

    async def close_room(self, room: str) -> None:
        """Close a room's tab (membership is kept; /leave leaves)."""
        if room not in self.views:
            return
        del self.views[room]
        self.unread.pop(room, None)
        if self.parley.conn is not None:
            self.parley.conn.forget(room)
        await self.tabs.remove_pane(pane_id(room))
        self._update_title()
        if not self.views:
            self.parley.show_rooms()

    # ------------------------------------------------------------------ events

    def on_entry(self, entry: Entry) -> None:
        """A new entry from the connection: show it, count it as unread if hidden."""
        view = self.views.get(entry.room)
        if view is None or not view.add_entry(entry):
            return
        if entry.room != self.active_room and entry.kind == "message":
            self.unread[entry.room] = self.unread.get(entry.room, 0) + 1
            self._relabel(entry.room)

    def on_notice(self, notice: Notice) -> None:
        """Typing in a room, or a mention, invitation or read marker for me."""
        view = self.views.get(notice.room)
        if notice.kind == "typing":
            if view is not None:
                view.typing(notice.user)
        elif notice.kind == "mention":
            self.notify(f"{notice.user} mentioned you in #{notice.room}", title="Mention")
        elif notice.kind == "invitation":
            self.notify(
                f"{notice.user} invited you to #{notice.room}: /join {notice.room}",
                title="Invitation",
            )
        elif notice.kind == "read" and self.unread.get(notice.room):
            self.unread[notice.room] = 0  # (read on another device)
            self._relabel(notice.room)

    def on_online(self, room: str, user: str, online: bool) -> None:
        """A member came online or went offline."""
        view = self.views.get(room)
        if view is not None:
            view.sidebar.set_online(user, online)

    def on_deleted(self, room: str, by_me: bool) -> None:
        """The room was deleted: say so in its tab and stop accepting input for it."""
        view = self.views.get(room)
        if view is None:
            return
        view.deleted = True
        who = "you" if by_me else "its owner"
        view.add_system(f"room {room} was deleted by {who}", "error")
        self._relabel(room)

    def system_all(self, text: str, kind: str = "warning") -> None:
        """A notice in every open room (connection state changes)."""
        for view in self.views.values():
            view.add_system(text, kind)

    def system(self, room: str | None, text: str, kind: str = "warning") -> None:
        """A notice in one room, or in all when room is None."""
        if room is None:
            self.system_all(text, kind)
        elif room in self.views:
            self.views[room].add_system(text, kind)

    @on(TabbedContent.TabActivated)
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        room = (event.pane.id or "").removeprefix("room-")
        if self.unread.get(room):
            self.unread[room] = 0
            self._relabel(room)
        self._update_title()

    # ------------------------------------------------------------------ history

    @on(MessageLog.AtTop)
    def _at_top(self, event: MessageLog.AtTop) -> None:
        room = self.active_room
        if room is not None:
            self.load_older(room)

    @work(group="history")
    async def load_older(self, room: str) -> None:
        """Fetch the page of entries before the oldest one shown."""
        view = self.views.get(room)
        conn = self.parley.conn
        if view is None or conn is None or view.loading_older or not view.has_older:
            return
        view.loading_older = True
        try:
            entries = await conn.history(room, before=view.oldest, limit=HISTORY_PAGE)
        except ParleyError as exc:
            view.add_system(f"could not load older messages: {exc}", "error")
            return
        finally:
            view.loading_older = False
        await view.prepend(entries)
        if not entries:
            view.at_beginning = True
            view.mark_top(f"— the beginning of #{room} —")

    # ------------------------------------------------------------------ input

    @on(Input.Changed, "#message-input")
    def _changed(self, event: Input.Changed) -> None:
        """Tell the room this user is typing (at most every TYPING_EVERY s)."""
        room, conn = self.active_room, self.parley.conn
        if not event.value or event.value.startswith("/") or room is None or conn is None:
            return
        now = time.monotonic()
        if now - self._typing_sent.get(room, -TYPING_EVERY) >= TYPING_EVERY:
            self._typing_sent[room] = now
            self.run_worker(conn.typing(room), group="typing")

    def action_edit_last(self) -> None:
        """Up in an empty input line: edit my last message."""
        box = self.query_one("#message-input", Input)
        room = self.active_room
        if box.value or room is None:
            return
        line = self.views[room].last_own()
        if line is None:
            return
        self.editing = (room, line.entry.seq)
        box.value = line.text
        box.cursor_position = len(box.value)
        box.placeholder = f"editing #{line.entry.seq} — enter to save, esc to cancel"

    def action_cancel_edit(self) -> None:
        """Escape: stop editing."""
        if self.editing is not None:
            self.editing = None
            box = self.query_one("#message-input", Input)
            box.clear()
            box.placeholder = PLACEHOLDER

    @on(Input.Submitted, "#message-input")
    def _submitted(self, event: Input.Submitted) -> None:
        text = event.value
        if not text.strip():
            return
        event.input.clear()
        if self.editing is not None:
            edited_room, seq = self.editing
            self.action_cancel_edit()
            self._annotate(edited_room, "edit", seq, text=text)
            return
        if text.startswith("/") and not text.startswith("//"):
            self.run_command(text[1:].strip())
            return
        room = self.active_room
        if room is None:
            self.notify("Open a room first (ctrl+r for the room list).", severity="warning")
            return
        if self.views[room].deleted:
            self.views[room].add_system("this room was deleted; nothing can be sent", "error")
            return
        self._send(room, text[1:] if text.startswith("//") else text)

    @work(group="send")
    async def _send(self, room: str, text: str) -> None:
        conn = self.parley.conn
        if conn is None:
            return
        try:
            await conn.send(room, text, retry_for=SEND_RETRY_SECONDS)
        except ParleyError as exc:
            self.system(room, f"not sent: {exc}", "error")

    @work(group="annotate")
    async def _annotate(
        self, room: str, kind: str, seq: int, *, text: str = "", emoji: str = ""
    ) -> None:
        conn = self.parley.conn
        if conn is None:
            return
        try:
            await conn.annotate(kind, room, seq, text=text, emoji=emoji)
        except ParleyError as exc:
            self.system(room, f"could not {kind}: {exc}", "error")

    @work(group="dm")
    async def open_dm(self, user: str) -> None:
        """Open (creating it the first time) the direct-message room with `user`."""
        conn = self.parley.conn
        if conn is None:
            return
        me = self.parley.user
        if not me:
            # signed in by token alone: the room's name (a digest of both
            # names) is known from the reply; join again for its backlog
            try:
                room = str((await conn.dm(user))["room"])
            except ParleyError as exc:
                self.notify(f"could not message {user}: {exc}", severity="error")
                return
        else:
            room = dm_room(me, user)
        # (the tab first: the room's backlog follows the reply at once)
        if room not in self.views:
            view = RoomView(room, self.parley.user)
            self.views[room] = view
            self.unread[room] = 0
            await self.tabs.add_pane(TabPane(f"@{user}", view, id=pane_id(room)))
        self.tabs.active = pane_id(room)
        self._update_title()
        try:
            joined = await (conn.dm(user) if me else conn.join(room))
        except ParleyError as exc:
            self.views[room].add_system(f"could not message {user}: {exc}", "error")
            return
        self.views[room].sidebar.set_members(joined.get("members") or [])

    @work(group="invite")
    async def _invite(self, room: str, user: str) -> None:
        conn = self.parley.conn
        if conn is None:
            return
        try:
            await conn.invite(room, user)
        except ParleyError as exc:
            self.system(room, f"could not invite {user}: {exc}", "error")
            return
        self.system(room, f"invited {user}", "info")

    def _message_command(self, name: str, arg: str, room: str) -> None:
        """/unsend, /react and /unreact: about the given #seq, else my last
        message (unsend) or the last message (reactions)."""
        words = arg.split()
        seq = next((int(w.lstrip("#")) for w in words if w.lstrip("#").isdigit()), None)
        view = self.views[room]
        if name == "unsend":
            if seq is None:
                mine = view.last_own()
                if mine is None:
                    self.notify("nothing of yours to unsend here", severity="warning")
                    return
                seq = mine.entry.seq
            self._annotate(room, "unsend", seq)
            return
        emoji = next((w for w in words if not w.lstrip("#").isdigit()), "")
        if not emoji:
            self.notify(f"/{name} needs an emoji, e.g. /{name} 👍", severity="warning")
            return
        if seq is None:
            last = view.last_message()
            if last is None:
                self.notify("no message to react to here", severity="warning")
                return
            seq = last.entry.seq
        self._annotate(room, name, seq, emoji=emoji)

    def run_command(self, line: str) -> None:
        """Run a /command typed in the input line."""
        name, _, arg = line.partition(" ")
        arg = arg.strip()
        room = self.active_room
        if name in ("dm", "invite") and not valid_user(arg):
            self.notify(f"/{name} needs a user name, e.g. /{name} alice", severity="warning")
        elif name == "dm":
            self.open_dm(arg)
        elif name == "invite" and room:
            self._invite(room, arg)
        elif name == "edit" and room:
            if not arg:
                self.action_edit_last()
                return
            line_ = self.views[room].last_own()
            if line_ is None:
                self.notify("nothing of yours to edit here", severity="warning")
            else:
                self._annotate(room, "edit", line_.entry.seq, text=arg)
        elif name in ("unsend", "react", "unreact") and room:
            self._message_command(name, arg, room)
        elif name in ("join", "j", "create") and not valid_room(arg):
            self.notify(f"/{name} needs a room name, e.g. /{name} general", severity="warning")
        elif name in ("join", "j"):
            self.parley.open_room(arg)
        elif name == "create":
            self.parley.create_room(arg)
        elif name == "leave" and room:
            self.parley.leave_room(room)
        elif name == "delete" and room:
            self.parley.confirm_delete(room)
        elif name == "rooms":
            self.parley.show_rooms()
        elif name in ("help", "?"):
            self.parley.action_help()
        elif name in ("quit", "exit"):
            self.parley.exit()
        else:
            self.notify(f"unknown command /{name}; try /help", severity="warning")

    # ------------------------------------------------------------------ keys

    def _switch(self, step: int) -> None:
        rooms = list(self.views)
        if not rooms:
            return
        current = self.active_room
        index = rooms.index(current) if current in rooms else 0
        self.tabs.active = pane_id(rooms[(index + step) % len(rooms)])

    def action_next_room(self) -> None:
        """Show the next room's tab."""
        self._switch(1)

    def action_prev_room(self) -> None:
        """Show the previous room's tab."""
        self._switch(-1)

    def action_goto(self, number: int) -> None:
        """Show room number `number` (1-based, in tab order)."""
        rooms = list(self.views)
        if 1 <= number <= len(rooms):
            self.tabs.active = pane_id(rooms[number - 1])

    def action_rooms(self) -> None:
        """Go to the rooms screen."""
        self.parley.show_rooms()

    async def action_close_room(self) -> None:
        """Close the current tab."""
        room = self.active_room
        if room is not None:
            await self.close_room(room)

    def action_page_up(self) -> None:
        """Scroll up a page; at the top, load older messages."""
        room = self.active_room
        if room is None:
            return
        log = self.views[room].log_view
        if log.scroll_y <= 0:
            self.load_older(room)
        else:
            log.scroll_page_up(animate=False)

    def action_page_down(self) -> None:
        """Scroll down a page."""
        room = self.active_room
        if room is not None:
            self.views[room].log_view.scroll_page_down(animate=False)
