"""The connect screen: gateway URL, user name and optional token."""

from __future__ import annotations

from typing import cast

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Center, Vertical
from textual.screen import Screen
from textual.widgets import Button, Footer, Input, Label, Static

from parley.client.errors import ParleyError
from parley.client.format import valid_user
from parley.client.screens.host import ChatHost


class ConnectScreen(Screen[None]):
    """Ask where and as whom to connect; the app remembers the answers."""

    DEFAULT_CSS = """
    ConnectScreen { align: center middle; }
    ConnectScreen #connect-box {
        width: 64; max-width: 100%; height: auto;
        border: round $primary; padding: 1 2; background: $surface;
    }
    ConnectScreen #title { text-style: bold; color: $accent; margin-bottom: 1; }
    ConnectScreen Label { margin-top: 1; }
    ConnectScreen #status { height: auto; margin-top: 1; }
    ConnectScreen #status.error { color: $error; }
    ConnectScreen Button { margin-top: 1; width: 100%; }
    """
    BINDINGS = [Binding("ctrl+q", "app.quit", "Quit")]

    def __init__(
        self, url: str, user: str, token: str, autoconnect: bool = False, error: str = ""
    ) -> None:
        super().__init__()
        self.url = url
        self.user = user
        self.token = token
        self.autoconnect = autoconnect
        self.error = error
        """Shown under the form on arrival (why we are back here)."""

    @property
    def parley(self) -> ChatHost:
        """The app, typed."""
        return cast("ChatHost", self.app)

    def compose(self) -> ComposeResult:
        with Center(), Vertical(id="connect-box"):
            yield Static("parley — distributed chat", id="title")
            yield Label("Gateway URL")
            yield Input(self.url, placeholder="ws://127.0.0.1:8080/ws", id="url")
            yield Label("User name")
            yield Input(self.user, placeholder="alice", id="user")
            yield Label("Token (only when the gateway requires one)")
            yield Input(self.token, password=True, placeholder="JWT", id="token")
            yield Button("Connect", variant="primary", id="connect")
            yield Static("", id="status")
        yield Footer()

    def on_mount(self) -> None:
        """Focus Connect when everything is filled in, else the first empty field."""
        if self.error:
            self.call_after_refresh(self.show, self.error, True)
        if self.autoconnect:
            self.start_connect()
            return
        for field in ("url", "user"):
            widget = self.query_one(f"#{field}", Input)
            if not widget.value:
                widget.focus()
                return
        self.query_one("#connect", Button).focus()

    @on(Input.Submitted)
    @on(Button.Pressed, "#connect")
    def start_connect(self) -> None:
        """Validate the fields and connect."""
        url = self.query_one("#url", Input).value.strip()
        user = self.query_one("#user", Input).value.strip()
        token = self.query_one("#token", Input).value.strip()
        if not url.startswith(("ws://", "wss://")):
            self.show("The URL must start with ws:// or wss://", error=True)
            return
        if not token and not valid_user(user):
            self.show("User names are 1-32 lowercase letters, digits, '-' or '_'.", error=True)
            return
        self.show(f"Connecting to {url} …")
        self.query_one("#connect", Button).disabled = True
        self._connect(url, user, token)

    @work(exclusive=True, group="connect")
    async def _connect(self, url: str, user: str, token: str) -> None:
        try:
            await self.parley.connect(url, user, token)
        except ParleyError as exc:
            self.show(str(exc), error=True)
            self.query_one("#connect", Button).disabled = False
            return

    def show(self, text: str, error: bool = False) -> None:
        """Show a status or error line under the form."""
        found = self.query("#status")
        if not found:
            return  # the screen is going away
        status = found.first(Static)
        status.update(text)
        status.set_class(error, "error")
