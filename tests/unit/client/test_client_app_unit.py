"""The chat app's own behaviour (tabs, unread counts, commands, notices) against the double."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from client_gateway_double import GatewayDouble
from parley.client.app import ParleyApp
from parley.client.connection import Connection
from parley.client.screens.connect import ConnectScreen
from parley.client.screens.modals import HelpScreen
from parley.client.settings import Settings
from parley.client.widgets import SystemLine
from support.wait import wait_for
from textual.pilot import Pilot
from textual.widgets import Input

DEADLINE = 5.0


@pytest.fixture
async def bob(gateway: GatewayDouble) -> AsyncIterator[Connection]:
    """A second user who owns rooms `general` and `random`."""
    conn = Connection(gateway.url, "bob")
    await conn.connect()
    for room in ("general", "random"):
        await conn.create(room)
        await conn.join(room)
    yield conn
    await conn.close()


def notices(app: ParleyApp, room: str) -> list[str]:
    """The client-side notices shown in a room's tab."""
    return [str(line.render()) for line in app.chat.views[room].query(SystemLine)]


async def start(app: ParleyApp, pilot: Pilot[int], *rooms: str) -> None:
    """Wait for the rooms screen, then open `rooms` by /join."""
    await wait_for(lambda: app.screen is app.rooms, DEADLINE)
    for room in rooms:
        app.open_room(room)
        await wait_for(lambda r=room: r in (app.conn.joined_rooms if app.conn else ()), DEADLINE)


async def test_unread_counts_and_room_switching(
    gateway: GatewayDouble, bob: Connection, tmp_path: Path
) -> None:
    """Messages in a hidden tab count as unread until it is shown (ctrl+n, alt+N)."""
    app = ParleyApp(gateway.url, "alice", autoconnect=True, settings_path=tmp_path / "c.json")
    async with app.run_test(size=(100, 30)) as pilot:
        await start(app, pilot, "general", "random")
        assert app.chat.active_room == "random"
        await bob.send("general", "one")
        await bob.send("general", "two")
        await wait_for(lambda: app.chat.unread.get("general") == 2, DEADLINE)
        assert str(app.chat.tabs.get_tab("room-general").label) == "general (2)"
        await pilot.press("ctrl+n")
        await wait_for(lambda: app.chat.active_room == "general", DEADLINE)
        assert app.chat.unread["general"] == 0
        await pilot.press("alt+2")
        await wait_for(lambda: app.chat.active_room == "random", DEADLINE)
        await pilot.press("ctrl+p")
        await wait_for(lambda: app.chat.active_room == "general", DEADLINE)


async def test_slash_commands_and_help(
    gateway: GatewayDouble, bob: Connection, tmp_path: Path
) -> None:
    """/create opens a new room, /leave leaves it, f1 shows help."""
    app = ParleyApp(gateway.url, "alice", autoconnect=True, settings_path=tmp_path / "c.json")
    async with app.run_test(size=(100, 30)) as pilot:
        await start(app, pilot, "general")
        await pilot.press(*"/create fresh", "enter")
        await wait_for(lambda: "fresh" in app.chat.views, DEADLINE)
        assert gateway.rooms["fresh"].owner == "alice"
        await pilot.press(*"/leave", "enter")
        await wait_for(lambda: "fresh" not in app.chat.views, DEADLINE)
        assert "alice" not in gateway.rooms["fresh"].members
        await pilot.press("f1")
        await wait_for(lambda: isinstance(app.screen, HelpScreen), DEADLINE)
        await pilot.press("escape")
        await wait_for(lambda: not isinstance(app.screen, HelpScreen), DEADLINE)


async def test_reconnect_is_shown_and_nothing_repeats(
    gateway: GatewayDouble, bob: Connection, tmp_path: Path
) -> None:
    """A dropped socket shows reconnect notices and the room continues without repeats."""
    app = ParleyApp(gateway.url, "alice", autoconnect=True, settings_path=tmp_path / "c.json")
    async with app.run_test(size=(100, 30)) as pilot:
        await start(app, pilot, "general")
        await bob.send("general", "before")
        view = app.chat.views["general"]
        await wait_for(lambda: len(view.seqs) == 3, DEADLINE)
        for ws, user in list(gateway.users.items()):
            if user == "alice":
                ws.transport.abort()
        await wait_for(lambda: any("reconnecting" in n for n in notices(app, "general")), DEADLINE)
        await wait_for(lambda: any("reconnected" in n for n in notices(app, "general")), DEADLINE)
        await bob.send("general", "after")
        await wait_for(lambda: len(view.seqs) == 4, DEADLINE)
        assert sorted(view.seqs) == [1, 2, 3, 4]


async def test_connect_screen_reports_errors_and_remembers(
    gateway: GatewayDouble, tmp_path: Path
) -> None:
    """An unreachable URL is reported on the form; a good one is remembered."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"ws://127.0.0.1:{sock.getsockname()[1]}/ws"
    path = tmp_path / "c.json"
    app = ParleyApp(dead, "alice", settings_path=path)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(lambda: isinstance(app.screen, ConnectScreen), DEADLINE)
        await pilot.click("#connect")
        status = app.screen.query_one("#status")
        await wait_for(lambda: "cannot reach" in str(status.render()), DEADLINE)
        app.screen.query_one("#url", Input).value = gateway.url
        await pilot.click("#connect")
        await wait_for(lambda: app.screen is app.rooms, DEADLINE)
    assert Settings.load(path) == Settings(url=gateway.url, user="alice")


async def test_refused_reconnect_returns_to_connect_and_resumes_tabs(
    gateway: GatewayDouble, bob: Connection, tmp_path: Path
) -> None:
    """A token refused on reconnect shows the form; signing in again resumes the open tab."""
    app = ParleyApp(gateway.url, "", "alice", autoconnect=True, settings_path=tmp_path / "c.json")
    async with app.run_test(size=(100, 30)) as pilot:
        await start(app, pilot, "general")
        view = app.chat.views["general"]
        await bob.send("general", "before")
        await wait_for(lambda: len(view.seqs) == 3, DEADLINE)
        gateway.refuse_token = "alice"
        await gateway.cut_connections()
        await wait_for(lambda: isinstance(app.screen, ConnectScreen), DEADLINE)
        await wait_for(
            lambda: any("401" in str(w.render()) for w in app.screen.query("#status")),
            DEADLINE,
        )
        await bob.send("general", "while away")
        gateway.refuse_token = "bad"
        await pilot.click("#connect")
        await wait_for(lambda: app.screen is app.chat, DEADLINE)
        await wait_for(lambda: len(view.seqs) == 4, DEADLINE)
        assert sorted(view.seqs) == [1, 2, 3, 4]
