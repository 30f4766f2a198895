"""The rooms screen: every room with its owner, members and last activity."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, cast

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.coordinate import Coordinate
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from parley.client.errors import ParleyError
from parley.client.format import valid_room
from parley.client.screens.host import ChatHost
from parley.client.screens.modals import ConfirmScreen, PromptScreen
from parley.client.widgets import TopBar

# Last-activity look-ups cost one history request per room; past this many
# rooms the column shows the last seq only, so a big server stays snappy.
_ACTIVITY_LOOKUPS = 40


def ago(when: datetime | None, now: datetime | None = None) -> str:
    """A short relative time such as "just now", "5m ago", "3h ago", "2d ago"."""
    if when is None:
        return ""
    now = now or datetime.now(when.tzinfo)
    seconds = max(0, int((now - when).total_seconds()))
    if seconds < 45:
        return "just now"
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return "just now"


def room_name_problem(name: str) -> str | None:
    """Why `name` is not a valid room name, or None."""
    if valid_room(name):
        return None
    return "Use lowercase letters, digits, '-' and '_' (1-64, not starting with - or _)."


class RoomsScreen(Screen[None]):
    """Browse, join, create and delete rooms."""

    DEFAULT_CSS = """
    RoomsScreen DataTable { height: 1fr; }
    RoomsScreen #rooms-status { height: 1; padding: 0 1; color: $text-muted; }
    """
    BINDINGS = [
        Binding("enter", "join", "Join", show=True, priority=False),
        Binding("n", "create", "New room"),
        Binding("d", "delete", "Delete"),
        Binding("r", "refresh", "Refresh"),
        Binding("c,escape", "chat", "Open rooms"),
        Binding("f1,question_mark", "app.help", "Help"),
        Binding("ctrl+q", "app.quit", "Quit"),
    ]

    def __init__(self) -> None:
        super().__init__(name="rooms")
        self.listing: list[dict[str, Any]] = []

    @property
    def parley(self) -> ChatHost:
        """The app, typed."""
        return cast("ChatHost", self.app)

    def compose(self) -> ComposeResult:
        yield TopBar()
        table: DataTable[Any] = DataTable(cursor_type="row", zebra_stripes=True, id="rooms")
        table.add_column("Room", key="room")
        table.add_column("Owner", key="owner")
        table.add_column("Members", key="members")
        table.add_column("Last activity", key="activity")
        table.add_column("Unread", key="unread")
        yield table
        yield Static("", id="rooms-status")
        yield Footer()

    def on_screen_resume(self) -> None:
        """Refresh whenever the screen is shown."""
        self.sub_title = "rooms"
        self.action_refresh()

    @property
    def table(self) -> DataTable[Any]:
        """The rooms table."""
        return self.query_one("#rooms", DataTable)

    def selected_room(self) -> dict[str, Any] | None:
        """The room under the cursor."""
        table = self.table
        if not self.listing or not 0 <= table.cursor_row < table.row_count:
            return None
        key = table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key.value
        return next((r for r in self.listing if r.get("room") == key), None)

    def set_status(self, text: str) -> None:
        """Show a line under the table."""
        self.query_one("#rooms-status", Static).update(text)

    @work(exclusive=True, group="rooms-refresh")
    async def action_refresh(self) -> None:
        """Reload the room list (and when each room was last active)."""
        conn = self.parley.conn
        if conn is None:
            return
        self.set_status("loading rooms…")
        try:
            listing = await conn.rooms()
        except ParleyError as exc:
            self.set_status(f"could not list rooms: {exc}")
            return
        listing.sort(key=lambda r: str(r.get("room", "")))
        self.listing = listing
        self._fill(listing, {})
        activity = await self._activity(listing[:_ACTIVITY_LOOKUPS])
        if activity:
            self._fill(listing, activity)
        me = self.parley.user
        owned = sum(1 for r in listing if r.get("owner") == me)
        self.set_status(
            f"{len(listing)} room(s), {owned} yours · connected as {me} · "
            "enter join · n new · d delete"
        )

    async def _activity(self, listing: list[dict[str, Any]]) -> dict[str, datetime]:
        """When each room last had an entry, from a one-entry history page."""
        conn = self.parley.conn
        if conn is None:
            return {}

        async def last_time(room: str) -> tuple[str, datetime | None]:
            try:
                entries = await conn.history(room, limit=1)
            except ParleyError:
                return room, None
            return room, (entries[-1].time if entries else None)

        results = await asyncio.gather(
            *(last_time(str(r["room"])) for r in listing if int(r.get("last_seq") or 0) > 0)
        )
        return {room: when for room, when in results if when is not None}

    def _fill(self, listing: list[dict[str, Any]], activity: dict[str, datetime]) -> None:
        table = self.table
        keep = self.selected_room()
        table.clear()
        me = self.parley.user
        for r in listing:
            name = str(r.get("room", ""))
            shown = f"@{r['with']}" if r.get("dm") and r.get("with") else name
            owner = str(r.get("owner", ""))
            when = activity.get(name)
            last = f"#{r.get('last_seq', 0)}"
            table.add_row(
                Text(shown, style="bold" if name in self.parley.open_rooms() else ""),
                Text(
                    owner + (" (you)" if owner == me else ""), style="green" if owner == me else ""
                ),
                str(r.get("members", "")),
                f"{ago(when)} · {last}" if when else last,
                Text(str(r["unread"]), style="bold") if r.get("unread") else "",
                key=name,
            )
        if keep is not None:
            for index, r in enumerate(listing):
                if r.get("room") == keep.get("room"):
                    table.move_cursor(row=index)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a row joins that room."""
        if event.row_key.value:
            self.parley.open_room(str(event.row_key.value))

    def action_join(self) -> None:
        """Join the selected room."""
        room = self.selected_room()
        if room is not None:
            self.parley.open_room(str(room["room"]))

    def action_chat(self) -> None:
        """Back to the chat screen when rooms are open."""
        if self.parley.open_rooms():
            self.parley.show_chat()
        else:
            self.notify("Join a room first (enter), or create one (n).")

    def action_create(self) -> None:
        """Ask for a name, create the room and open it."""

        def done(name: str | None) -> None:
            if name:
                self._create(name)

        self.app.push_screen(
            PromptScreen("Name of the new room", "general", validate=room_name_problem), done
        )

    @work(group="rooms-create")
    async def _create(self, name: str) -> None:
        conn = self.parley.conn
        if conn is None:
            return
        try:
            await conn.create(name)
        except ParleyError as exc:
            self.notify(str(exc), severity="error", title="Could not create the room")
            return
        self.notify(f"Created room {name}")
        self.parley.open_room(name)

    def action_delete(self) -> None:
        """Delete the selected room after a confirmation (owner only)."""
        room = self.selected_room()
        if room is None:
            return
        name = str(room["room"])
        if room.get("owner") != self.parley.user:
            self.notify(
                f"Only its owner ({room.get('owner')}) can delete {name}.", severity="warning"
            )
            return

        def done(yes: bool | None) -> None:
            if yes:
                self._delete(name)

        self.app.push_screen(
            ConfirmScreen(
                f"Delete room {name!r} and its whole history for everyone?\nThis cannot be undone.",
                yes_label="Delete",
            ),
            done,
        )

    @work(group="rooms-delete")
    async def _delete(self, name: str) -> None:
        conn = self.parley.conn
        if conn is None:
            return
        try:
            await conn.delete(name)
        except ParleyError as exc:
            self.notify(str(exc), severity="error", title="Could not delete the room")
            return
        self.notify(f"Deleted room {name}")
        self.parley.room_deleted(name, by_me=True)
        self.action_refresh()
