"""The chat app, headless (App.run_test), against a real local cluster."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from parley.client.app import ParleyApp
from parley.client.connection import Connection
from parley.client.screens.modals import ConfirmScreen, PromptScreen
from parley.client.widgets import MessageLine, SystemLine
from support.cluster import LocalCluster
from support.wait import wait_for
from textual.pilot import Pilot
from textual.widgets import Input

DEADLINE = 20.0
"""Seconds any one condition may take (generous for a busy CI box)."""

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@asynccontextmanager
async def chat_app(
    tmp_path: Path, url: str, user: str, size: tuple[int, int] = (100, 30)
) -> AsyncIterator[tuple[ParleyApp, Pilot[int]]]:
    """A connected ParleyApp on the rooms screen, run headless."""
    app = ParleyApp(url, user, autoconnect=True, settings_path=tmp_path / f"{user}.json")
    async with app.run_test(size=size) as pilot:
        await wait_for(lambda: app.screen is app.rooms and app.rooms.listing is not None, DEADLINE)
        yield app, pilot


def shown(app: ParleyApp, room: str) -> list[MessageLine]:
    """The entry lines shown in a room's tab, top to bottom."""
    view = app.chat.views[room]
    return list(view.log_view.query(MessageLine))


def shown_seqs(app: ParleyApp, room: str) -> list[int]:
    """The seqs shown in a room's tab, top to bottom."""
    return [line.entry.seq for line in shown(app, room)]


def shown_texts(app: ParleyApp, room: str) -> list[str]:
    """The message texts shown in a room's tab, top to bottom."""
    return [line.entry.text for line in shown(app, room) if line.entry.kind == "message"]


async def type_text(pilot: Pilot[int], text: str) -> None:
    """Type `text` and press enter."""
    await pilot.press(*text, "enter")


async def open_room_via_table(app: ParleyApp, pilot: Pilot[int], room: str) -> None:
    """Go to the rooms screen, refresh, select `room` and press enter."""
    if app.screen is not app.rooms:
        await pilot.press("ctrl+r")
        await wait_for(lambda: app.screen is app.rooms, DEADLINE)
    app.rooms.action_refresh()
    await wait_for(lambda: any(r["room"] == room for r in app.rooms.listing), DEADLINE)
    await wait_for(lambda: app.rooms.table.row_count == len(app.rooms.listing), DEADLINE)
    index = [r["room"] for r in app.rooms.listing].index(room)
    app.rooms.table.focus()
    app.rooms.table.move_cursor(row=index)
    await pilot.press("enter")
    await wait_for(lambda: room in app.chat.views and app.screen is app.chat, DEADLINE)
    await wait_for(lambda: room in (app.conn.joined_rooms if app.conn else ()), DEADLINE)


async def create_room_via_prompt(app: ParleyApp, pilot: Pilot[int], room: str) -> None:
    """Press n on the rooms screen, type the name, and wait for the room's tab."""
    await pilot.press("n")
    await wait_for(lambda: isinstance(app.screen, PromptScreen), DEADLINE)
    await type_text(pilot, room)
    await wait_for(lambda: room in app.chat.views and app.screen is app.chat, DEADLINE)
    await wait_for(lambda: room in (app.conn.joined_rooms if app.conn else ()), DEADLINE)


def contiguous(seqs: list[int]) -> bool:
    """True when seqs rise by exactly one."""
    return seqs == list(range(seqs[0], seqs[0] + len(seqs))) if seqs else True


async def test_two_apps_chat_with_each_other(cluster: LocalCluster, tmp_path: Path) -> None:
    """Alice creates a room, Bob joins from the table, and each sees the other's messages."""
    url = cluster.gateway_url()
    async with (
        chat_app(tmp_path, url, "alice") as (alice, apilot),
        chat_app(tmp_path, url, "bob") as (bob, bpilot),
    ):
        await create_room_via_prompt(alice, apilot, "general")
        await open_room_via_table(bob, bpilot, "general")
        await type_text(apilot, "hello bob")
        await wait_for(lambda: "hello bob" in shown_texts(bob, "general"), DEADLINE)
        await type_text(bpilot, "hi alice")
        await wait_for(lambda: shown_texts(alice, "general") == ["hello bob", "hi alice"], DEADLINE)
        await wait_for(lambda: shown_texts(bob, "general") == ["hello bob", "hi alice"], DEADLINE)
        assert (
            shown_seqs(alice, "general")
            == shown_seqs(bob, "general")[-len(shown_seqs(alice, "general")) :]
        )
        assert contiguous(shown_seqs(bob, "general"))
        # Own messages are styled apart from others'.
        mine = [line for line in shown(alice, "general") if line.has_class("own")]
        assert [line.entry.text for line in mine] == ["hello bob"]
        # Bob's join shows up in Alice's member sidebar.
        await wait_for(lambda: "bob" in alice.chat.views["general"].sidebar.members, DEADLINE)


async def test_history_loads_when_scrolled_to_top(
    make_cluster: Callable[..., Awaitable[LocalCluster]], tmp_path: Path
) -> None:
    """Only the last 50 entries come with the join; scrolling to the top loads the rest."""
    # the writer sends 121 frames as fast as they are acknowledged: over the
    # gateway's default rate (50/s, bursts of 100) once acks take < 3.5 ms
    cluster = await make_cluster(extra_env={"PARLEY_RATE_LIMIT": "10000"})
    url = cluster.gateway_url()
    writer = Connection(url, "carol")
    await writer.connect()
    try:
        await writer.create("busy")
        for i in range(1, 121):
            await writer.send("busy", f"message {i}")
    finally:
        await writer.close()
    async with chat_app(tmp_path, url, "dave") as (app, pilot):
        await open_room_via_table(app, pilot, "busy")
        await wait_for(lambda: "message 120" in shown_texts(app, "busy"), DEADLINE)
        assert "message 1" not in shown_texts(app, "busy")
        view = app.chat.views["busy"]
        for _ in range(10):
            if "message 1" in shown_texts(app, "busy"):
                break
            shown_before = len(view.seqs)
            await wait_for(lambda: view.log_view.scroll_y > 0, DEADLINE)
            view.log_view.scroll_home(animate=False)
            await wait_for(
                lambda n=shown_before: len(view.seqs) > n or not view.has_older, DEADLINE
            )
        seqs = shown_seqs(app, "busy")
        texts = shown_texts(app, "busy")
        assert texts[:3] == ["message 1", "message 2", "message 3"]
        assert texts[-1] == "message 120"
        assert contiguous(seqs) and len(seqs) == len(set(seqs))


async def test_gateway_restart_resumes_without_gap_or_duplicate(
    make_cluster: Callable[..., Awaitable[LocalCluster]], tmp_path: Path
) -> None:
    """The app's gateway is killed and restarted while others talk; it shows every entry once."""
    cluster = await make_cluster(nodes=3, gateways=2)
    other = Connection(cluster.gateway_url(1), "erin")
    await other.connect()
    try:
        await other.create("ops")
        await other.join("ops")
        await other.send("ops", "before 1")
        async with chat_app(tmp_path, cluster.gateway_url(0), "frank") as (app, pilot):
            await open_room_via_table(app, pilot, "ops")
            await wait_for(lambda: "before 1" in shown_texts(app, "ops"), DEADLINE)
            cluster.kill_gateway(0)
            await wait_for(lambda: app.conn is not None and not app.conn.connected, DEADLINE)
            for i in range(1, 6):
                await other.send("ops", f"while down {i}", retry_for=DEADLINE)
            await cluster.restart_gateway(0)
            await wait_for(lambda: app.conn is not None and app.conn.reconnects >= 1, DEADLINE)
            for i in range(1, 4):
                await other.send("ops", f"after {i}", retry_for=DEADLINE)
            expected = (
                ["before 1"]
                + [f"while down {i}" for i in range(1, 6)]
                + [f"after {i}" for i in range(1, 4)]
            )
            await wait_for(lambda: shown_texts(app, "ops") == expected, DEADLINE)
            seqs = shown_seqs(app, "ops")
            assert contiguous(seqs) and len(seqs) == len(set(seqs))
            notices = [str(line.render()) for line in app.chat.views["ops"].query(SystemLine)]
            assert any("reconnect" in n for n in notices)
    finally:
        await other.close()


async def test_owner_deletes_room_and_member_is_told(cluster: LocalCluster, tmp_path: Path) -> None:
    """The owner deletes from the rooms screen (after confirming); the other app says so."""
    url = cluster.gateway_url()
    async with (
        chat_app(tmp_path, url, "grace") as (owner, opilot),
        chat_app(tmp_path, url, "heidi") as (member, mpilot),
    ):
        await create_room_via_prompt(owner, opilot, "doomed")
        await open_room_via_table(member, mpilot, "doomed")
        await opilot.press("ctrl+r")
        await wait_for(lambda: owner.screen is owner.rooms, DEADLINE)
        await wait_for(lambda: any(r["room"] == "doomed" for r in owner.rooms.listing), DEADLINE)
        await wait_for(lambda: owner.rooms.table.row_count > 0, DEADLINE)
        owner.rooms.table.focus()
        owner.rooms.table.move_cursor(row=[r["room"] for r in owner.rooms.listing].index("doomed"))
        await opilot.press("d")
        await wait_for(lambda: isinstance(owner.screen, ConfirmScreen), DEADLINE)
        await opilot.press("y")
        view = member.chat.views["doomed"]
        await wait_for(lambda: view.deleted, DEADLINE)
        notices = [str(line.render()) for line in view.query(SystemLine)]
        assert any("deleted by its owner" in n for n in notices)
        await wait_for(lambda: all(r["room"] != "doomed" for r in owner.rooms.listing), DEADLINE)


async def test_small_terminal_hides_the_sidebar(cluster: LocalCluster, tmp_path: Path) -> None:
    """Below 80 columns the member sidebar is hidden; wider, it is shown."""
    async with chat_app(tmp_path, cluster.gateway_url(), "ivan", size=(70, 20)) as (app, pilot):
        await create_room_via_prompt(app, pilot, "tiny")
        sidebar = app.chat.views["tiny"].sidebar
        await wait_for(lambda: app.chat.has_class("-narrow"), DEADLINE)
        assert not sidebar.display or sidebar.region.width == 0
        await pilot.resize_terminal(120, 30)
        await wait_for(lambda: sidebar.region.width > 0, DEADLINE)


async def test_export_screenshots(cluster: LocalCluster, tmp_path: Path) -> None:
    """The rooms and chat screens export as SVG (into docs/screenshots with
    PARLEY_SCREENSHOTS=1, which is how the README's pictures are made)."""
    out = SCREENSHOTS if os.environ.get("PARLEY_SCREENSHOTS") else tmp_path / "screenshots"
    url = cluster.gateway_url()
    seed = {
        "general": [
            ("bob", "morning all — the deploy went out at 09:00"),
            ("carol", "nice! any alerts?"),
            ("bob", "none so far; replication lag stayed at zero"),
        ],
        "ops": [("carol", "node-2 restarted, room moved back in 3 s")],
        "random": [("dave", "who took the last coffee")],
    }
    conns = {u: Connection(url, u) for u in ("alice", "bob", "carol", "dave")}
    for conn in conns.values():
        await conn.connect()
    try:
        await conns["alice"].create("general")
        await conns["carol"].create("ops")
        await conns["dave"].create("random")
        for room in seed:
            for user in ("bob", "carol", "dave"):
                await conns[user].join(room)
        sent: dict[str, int] = {}
        for room, lines in seed.items():
            for user, text in lines:
                sent[text] = await conns[user].send(room, text)
        # an edit and reactions, as the chat shows them
        await conns["bob"].annotate(
            "edit",
            "general",
            sent["none so far; replication lag stayed at zero"],
            text="none so far; replication lag stayed at 0 ms",
        )
        for user in ("alice", "carol"):
            await conns[user].annotate(
                "react", "general", sent["morning all — the deploy went out at 09:00"], emoji="🎉"
            )
        async with chat_app(tmp_path, url, "alice", size=(100, 28)) as (app, pilot):
            app.rooms.action_refresh()
            await wait_for(lambda: app.rooms.table.row_count == 3, DEADLINE)
            await pilot.pause(0.3)
            out.mkdir(parents=True, exist_ok=True)
            (out / "rooms.svg").write_text(app.export_screenshot(title="parley — rooms"))
            await open_room_via_table(app, pilot, "ops")
            await open_room_via_table(app, pilot, "general")
            await conns["carol"].send("ops", "the dashboards look fine")
            await type_text(pilot, "great work everyone")
            await wait_for(lambda: "great work everyone" in shown_texts(app, "general"), DEADLINE)
            await conns["bob"].send("general", "thanks alice!")
            await wait_for(lambda: "thanks alice!" in shown_texts(app, "general"), DEADLINE)
            await wait_for(lambda: app.chat.unread.get("ops") == 1, DEADLINE)
            await conns["bob"].typing("general")
            typing = app.chat.views["general"].typing_line
            await wait_for(lambda: "bob is typing" in str(typing.render()), DEADLINE)
            await pilot.pause(0.3)
            (out / "chat.svg").write_text(app.export_screenshot(title="parley — chat"))
    finally:
        for conn in conns.values():
            await conn.close()
    rooms_svg = (out / "rooms.svg").read_text()
    chat_svg = (out / "chat.svg").read_text()
    assert all(room in rooms_svg for room in seed)
    # SVG text escapes spaces; the rendered messages are in the picture
    assert "great&#160;work&#160;everyone" in chat_svg
    assert "thanks&#160;alice!" in chat_svg


def line_of(app: ParleyApp, room: str, seq: int) -> MessageLine | None:
    """The message line of `seq` in a room's tab."""
    return app.chat.views[room].lines.get(seq)


async def test_edit_react_typing_and_direct_messages(cluster: LocalCluster, tmp_path: Path) -> None:
    """Up edits my last message; /react and /unsend; typing shows under the
    log; /dm opens the pair's room on both sides."""
    url = cluster.gateway_url()
    async with (
        chat_app(tmp_path, url, "alice") as (alice, apilot),
        chat_app(tmp_path, url, "bob") as (bob, bpilot),
    ):
        await create_room_via_prompt(alice, apilot, "general")
        await open_room_via_table(bob, bpilot, "general")
        await type_text(apilot, "helo bob")
        await wait_for(lambda: "helo bob" in shown_texts(bob, "general"), DEADLINE)
        seq = next(line.entry.seq for line in shown(bob, "general") if line.text == "helo bob")

        # up in the empty line brings the last message back for editing
        await apilot.press("up")
        box = alice.chat.query_one("#message-input")
        await wait_for(lambda: getattr(box, "value", "") == "helo bob", DEADLINE)
        await apilot.press(*["backspace"] * len("helo bob"))
        await type_text(apilot, "hello bob")

        def edited(app: ParleyApp) -> bool:
            line = line_of(app, "general", seq)
            return line is not None and line.text == "hello bob" and line.edited

        await wait_for(lambda: edited(bob) and edited(alice), DEADLINE)
        assert "(edited)" in str(line_of(bob, "general", seq).render())  # type: ignore[union-attr]

        # (the pilot types key names; an emoji goes in as the line's value)
        bob_box = bob.chat.query_one("#message-input", Input)
        bob_box.value = "/react 👍"
        await bpilot.press("enter")
        await wait_for(
            lambda: (line_of(alice, "general", seq) or MessageLine).reactions == {"👍": ["bob"]},
            DEADLINE,
        )
        # typing: bob starts a line, alice sees it under the log
        await bpilot.press("o", "k")
        typing = alice.chat.views["general"].typing_line
        await wait_for(lambda: "bob is typing" in str(typing.render()), DEADLINE)
        await bpilot.press("enter")
        await wait_for(lambda: "ok" in shown_texts(alice, "general"), DEADLINE)
        await wait_for(lambda: "bob is typing" not in str(typing.render()), DEADLINE)

        await type_text(apilot, "/unsend")
        await wait_for(lambda: (line_of(bob, "general", seq) or MessageLine).unsent, DEADLINE)

        # a direct-message room, opened from both sides
        await type_text(apilot, "/dm bob")
        await wait_for(lambda: len(alice.chat.views) == 2, DEADLINE)
        dm = next(room for room in alice.chat.views if room != "general")
        await wait_for(lambda: alice.chat.active_room == dm, DEADLINE)
        await type_text(apilot, "just us")
        await type_text(bpilot, "/dm alice")
        await wait_for(lambda: dm in bob.chat.views, DEADLINE)
        await wait_for(lambda: "just us" in shown_texts(bob, dm), DEADLINE)
        assert str(bob.chat.tabs.get_tab(f"room-{dm}").label) == "@alice"
