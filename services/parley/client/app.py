"""`parley chat`: the Textual terminal chat app.

Screens: connect (remembers the last URL and user), rooms (browse, join,
create, delete), chat (several rooms in tabs). The app owns one
`Connection`; a worker pumps its events into the screens. Reconnects and
resumes are the connection's job; the app only tells the user about them.
"""

from __future__ import annotations

import os
from pathlib import Path

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.screen import ModalScreen

from parley.client.connection import Connection
from parley.client.errors import ParleyError
from parley.client.events import Deleted, Entry, Notice, Online, Status
from parley.client.screens.chat import ChatScreen
from parley.client.screens.connect import ConnectScreen
from parley.client.screens.host import ChatHost
from parley.client.screens.modals import ConfirmScreen, HelpScreen
from parley.client.screens.rooms import RoomsScreen
from parley.client.settings import Settings
from parley.client.tokens import TokenSource

DEFAULT_URL = "ws://127.0.0.1:8080/ws"


class ParleyApp(App[int]):
    """The chat app. Create it with the connect details, then `run()`.

    Args:
        url: Gateway URL to prefill (or connect to with `autoconnect`).
        user: User name to prefill.
        token: JWT to prefill (never saved).
        token_source: where fresh tokens come from (a token file); used while
            the form's token is the one it gave.
        autoconnect: Skip the connect form and connect straight away.
        settings_path: Where to remember URL and user (default: platformdirs).
    """

    TITLE = "parley"
    ENABLE_COMMAND_PALETTE = False  # ctrl+p is "previous room" here
    CSS = """
    Screen { background: $background; }
    """
    BINDINGS = [
        Binding("f1", "help", "Help"),
        Binding("question_mark", "help", "Help", show=False),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    def __init__(
        self,
        url: str = DEFAULT_URL,
        user: str = "",
        token: str = "",
        *,
        token_source: TokenSource | None = None,
        autoconnect: bool = False,
        settings_path: Path | None = None,
    ) -> None:
        super().__init__()
        self.url = url
        self.user = user
        self.token_source = token_source
        self.token = token or (token_source() if token_source is not None else "")
        self.autoconnect = autoconnect
        self.settings_path = settings_path
        self.conn: Connection | None = None
        self.deleted_rooms: set[str] = set()
        """Rooms seen deleted (a name can be created again: open_room forgets it)."""
        self.chat = ChatScreen()
        self.rooms = RoomsScreen()

    def on_mount(self) -> None:
        """Install the long-lived screens and show the connect form."""
        self.install_screen(self.chat, "chat")
        self.install_screen(self.rooms, "rooms")
        self.push_screen(ConnectScreen(self.url, self.user, self.token, self.autoconnect))

    async def connect(self, url: str, user: str, token: str) -> None:
        """Connect (raising ParleyError on failure), remember the details, show rooms."""
        # The source keeps the token fresh, unless the form was given another one.
        source = self.token_source
        if source is not None and token != source():
            source = None
        conn = Connection(url, user, token, token_source=source)
        await conn.connect()
        if self.conn is not None:
            await self.conn.close()
        self.conn = conn
        self.url, self.user, self.token = url, user, token
        Settings(url=url, user=user).save(self.settings_path)
        self.title = f"parley · {user}"
        self.sub_title = url
        self._pump(conn)
        if self.chat.views:
            self._rejoin(conn)
        # Not awaited: this runs in a worker of the connect screen being replaced.
        self.switch_screen("chat" if self.chat.views else "rooms")

    @work(group="pump", exclusive=True)
    async def _pump(self, conn: Connection) -> None:
        """Route connection events to the screens until the connection closes."""
        async for event in conn.events():
            if isinstance(event, Entry):
                self.chat.on_entry(event)
            elif isinstance(event, Online):
                self.chat.on_online(event.room, event.user, event.online)
            elif isinstance(event, Deleted):
                self.room_deleted(event.room, by_me=False)
            elif isinstance(event, Status):
                self._on_status(event)
            elif isinstance(event, Notice):
                self.chat.on_notice(event)

    @work(group="rejoin")
    async def _rejoin(self, conn: Connection) -> None:
        """After signing in again, follow the open rooms from where each tab stopped."""
        for room, view in list(self.chat.views.items()):
            try:
                await conn.join(room, since=view.newest)
            except ParleyError as exc:
                view.add_system(f"could not rejoin {room}: {exc}", "error")

    def _on_status(self, status: Status) -> None:
        if status.state == "reconnecting":
            self.chat.system_all(status.message)
            self.sub_title = "reconnecting…"
        elif status.state == "connected":
            self.chat.system_all(status.message, "info")
            self.sub_title = self.url
        elif status.state == "resumed":
            # "connected" already told the user; refresh who is online, which
            # may have changed while we were away.
            if status.room is not None and status.room in self.chat.views:
                self.chat.load_members(status.room)
        elif status.state == "closed":
            self.chat.system_all(status.message, "error")
            self.sub_title = "disconnected"
            # Reconnecting gave up (e.g. the token expired): back to the form,
            # keeping the open tabs so they resume after signing in again.
            while isinstance(self.screen, ModalScreen):
                self.pop_screen()
            self.switch_screen(ConnectScreen(self.url, self.user, self.token, error=status.message))
        else:
            self.chat.system(status.room, status.message, "error")

    # ------------------------------------------------------------------ navigation

    def open_rooms(self) -> list[str]:
        """Rooms open in the chat screen, in tab order."""
        return list(self.chat.views)

    @work(group="open-room")
    async def open_room(self, room: str) -> None:
        """Switch to the chat screen and open (join) `room`."""
        self.deleted_rooms.discard(room)
        if self.screen is not self.chat:
            # Awaited: the chat screen must be composed before a tab is added.
            await self.switch_screen("chat")
        await self.chat.open_room(room)

    def show_chat(self) -> None:
        """Show the chat screen."""
        if self.screen is not self.chat:
            self.switch_screen("chat")

    def show_rooms(self) -> None:
        """Show the rooms screen."""
        if self.screen is not self.rooms:
            self.switch_screen("rooms")

    def action_help(self) -> None:
        """Show the key reference."""
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    # ------------------------------------------------------------------ room actions

    @work(group="create-room")
    async def create_room(self, room: str) -> None:
        """Create `room` and open it."""
        if self.conn is None:
            return
        try:
            await self.conn.create(room)
        except ParleyError as exc:
            self.notify(str(exc), severity="error", title="Could not create the room")
            return
        self.open_room(room)

    @work(group="leave-room")
    async def leave_room(self, room: str) -> None:
        """Leave `room` (a `leave` entry) and close its tab."""
        if self.conn is None:
            return
        try:
            await self.conn.leave(room)
        except ParleyError as exc:
            self.notify(str(exc), severity="error", title="Could not leave")
            return
        await self.chat.close_room(room)
        self.notify(f"You left {room}")

    def confirm_delete(self, room: str) -> None:
        """Ask, then delete `room` (the gateway refuses unless you own it)."""

        def done(yes: bool | None) -> None:
            if yes:
                self._delete(room)

        self.push_screen(
            ConfirmScreen(f"Delete room {room!r} and its whole history for everyone?", "Delete"),
            done,
        )

    @work(group="delete-room")
    async def _delete(self, room: str) -> None:
        if self.conn is None:
            return
        try:
            await self.conn.delete(room)
        except ParleyError as exc:
            self.notify(str(exc), severity="error", title="Could not delete the room")
            return
        self.room_deleted(room, by_me=True)

    def room_deleted(self, room: str, by_me: bool) -> None:
        """Tell the user a room is gone, wherever they are (once per deletion)."""
        if room in self.deleted_rooms:
            return  # the reply to our own delete and the push can both arrive
        self.deleted_rooms.add(room)
        self.chat.on_deleted(room, by_me)
        if not by_me:
            self.notify(
                f"Room {room} was deleted by its owner.", severity="warning", title="Room deleted"
            )
        if self.screen is self.rooms:
            self.rooms.action_refresh()

    async def on_unmount(self) -> None:
        """Close the connection when the app ends."""
        if self.conn is not None:
            await self.conn.close()


def initial_details(url: str, user: str, settings: Settings) -> tuple[str, str]:
    """The URL and user to prefill: explicit values win, defaults defer to last time.

    The CLI always passes something (its defaults are the local gateway and
    $USER), so a value equal to its default is treated as "not chosen" and
    the remembered one is used instead.
    """
    if (not url or url == DEFAULT_URL) and settings.url:
        url = settings.url
    default_users = {"", "me", os.environ.get("USER", "")}
    if user in default_users and not os.environ.get("PARLEY_USER") and settings.user:
        user = settings.user
    return url or DEFAULT_URL, user


def run_chat(
    url: str, user: str, token: str | None, token_source: TokenSource | None = None
) -> int:
    """Run the chat app in the terminal; returns the exit status (0 on a normal quit)."""
    settings = Settings.load()
    url, user = initial_details(url, user, settings)
    app = ParleyApp(url, user, token or "", token_source=token_source)
    app.run()
    return app.return_code or 0


def _is_a_chat_host(app: ParleyApp) -> ChatHost:
    """Type-checked only: the app is what its screens take it for."""
    return app
