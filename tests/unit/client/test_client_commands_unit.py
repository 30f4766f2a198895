"""send/tail/rooms commands: output and exit codes against the gateway double."""

from __future__ import annotations

import asyncio
import json
import re
import socket

import pytest
from client_gateway_double import GatewayDouble
from parley.client import commands
from parley.client.connection import Connection
from support.wait import wait_for


async def setup_room(gateway: GatewayDouble, *users: str) -> None:
    """Create room general owned by alice and join the given users."""
    for i, user in enumerate(("alice", *users)):
        conn = Connection(gateway.url, user)
        await conn.connect()
        if i == 0:
            await conn.create("general")
        await conn.join("general")
        await conn.close()


async def test_send_prints_seq_and_exits_zero(
    gateway: GatewayDouble, capsys: pytest.CaptureFixture[str]
) -> None:
    """An acknowledged send exits 0 and prints the seq."""
    await setup_room(gateway)
    code = await asyncio.to_thread(commands.send, gateway.url, "alice", None, "general", "hi")
    assert code == 0
    assert capsys.readouterr().out.strip() == "2"


async def test_send_not_member_exits_one_with_a_hint(
    gateway: GatewayDouble, capsys: pytest.CaptureFixture[str]
) -> None:
    """Sending to a room one has not joined exits 1 and says to join."""
    await setup_room(gateway)
    code = await asyncio.to_thread(commands.send, gateway.url, "bob", "", "general", "hi")
    assert code == 1
    assert "not a member" in capsys.readouterr().err


def test_usage_errors_exit_two(capsys: pytest.CaptureFixture[str]) -> None:
    """Bad room names, empty text and non-ws URLs exit 2 without connecting."""
    url = "ws://127.0.0.1:9/ws"
    assert commands.send(url, "a", "", "Bad Room", "hi") == 2
    assert commands.send(url, "a", "", "general", "   ") == 2
    assert commands.send(url, "a", "", "general", "x" * 4001) == 2
    assert commands.rooms("http://127.0.0.1:9/ws", "a", "", False) == 2
    assert "invalid room name" in capsys.readouterr().err


async def test_unreachable_exits_three(capsys: pytest.CaptureFixture[str]) -> None:
    """No gateway listening: exit 3."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code = await asyncio.to_thread(commands.rooms, f"ws://127.0.0.1:{port}/ws", "a", "", False)
    assert code == 3
    assert "cannot reach" in capsys.readouterr().err


async def test_refused_token_exits_four(gateway: GatewayDouble) -> None:
    """HTTP 401 at the handshake: exit 4."""
    assert await asyncio.to_thread(commands.rooms, gateway.url, "a", "bad", False) == 4


async def test_rooms_table_and_json(
    gateway: GatewayDouble, capsys: pytest.CaptureFixture[str]
) -> None:
    """rooms prints an aligned table, or a JSON array with --json."""
    await setup_room(gateway, "bob")
    assert await asyncio.to_thread(commands.rooms, gateway.url, "a", "", False) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["ROOM", "OWNER", "MEMBERS", "LAST", "SEQ", "UNREAD", "ADMINISTRATOR"]
    assert out[1].split()[:4] == ["general", "alice", "2", "2"]
    assert await asyncio.to_thread(commands.rooms, gateway.url, "a", "", True) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing[0]["room"] == "general" and listing[0]["owner"] == "alice"


async def test_tail_prints_lines_and_exits_when_room_deleted(
    gateway: GatewayDouble, capsys: pytest.CaptureFixture[str]
) -> None:
    """tail prints `[seq] HH:MM:SS user: text` lines and exits 0 on deletion."""
    await setup_room(gateway)
    alice = Connection(gateway.url, "alice")
    await alice.connect()
    try:
        await alice.join("general")
        await alice.send("general", "hello there")
        task = asyncio.create_task(
            asyncio.to_thread(commands.tail, gateway.url, "bob", "", "general", None, False)
        )
        await wait_for(lambda: gateway.subscribed("general", "bob"), 5)
        await alice.send("general", "live")
        await wait_for(lambda: len(gateway.rooms["general"].log) >= 4, 5)
        await alice.delete("general")
        code = await asyncio.wait_for(task, 10)
    finally:
        await alice.close()
    assert code == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert re.fullmatch(r"\[1\] \d\d:\d\d:\d\d \* alice joined", lines[0])
    assert re.fullmatch(r"\[2\] \d\d:\d\d:\d\d alice: hello there", lines[1])
    assert lines[2].endswith("* bob joined") and lines[3].endswith("alice: live")
    assert "was deleted" in captured.err


async def test_tail_json_since(gateway: GatewayDouble, capsys: pytest.CaptureFixture[str]) -> None:
    """tail --json --since N prints the frames after N as JSON lines."""
    await setup_room(gateway, "bob")
    owner = Connection(gateway.url, "alice")
    await owner.connect()
    try:
        task = asyncio.create_task(
            asyncio.to_thread(commands.tail, gateway.url, "bob", "", "general", 1, True)
        )
        await wait_for(lambda: gateway.subscribed("general", "bob"), 5)
        await owner.delete("general")
        assert await asyncio.wait_for(task, 10) == 0
    finally:
        await owner.close()
    frames = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [f["seq"] for f in frames] == [2]
    assert frames[0] == {**frames[0], "type": "presence", "user": "bob", "event": "join"}


async def test_tail_of_missing_room_exits_one(
    gateway: GatewayDouble, capsys: pytest.CaptureFixture[str]
) -> None:
    """tail on a room that does not exist exits 1 and says so."""
    code = await asyncio.to_thread(commands.tail, gateway.url, "bob", "", "nowhere", None, False)
    assert code == 1
    assert "does not exist" in capsys.readouterr().err


async def test_tail_retries_an_unavailable_join(
    gateway: GatewayDouble, capsys: pytest.CaptureFixture[str]
) -> None:
    """tail keeps trying while the room is briefly unavailable."""
    await setup_room(gateway)
    gateway.fail_joins = 2
    owner = Connection(gateway.url, "alice")
    await owner.connect()
    try:
        task = asyncio.create_task(
            asyncio.to_thread(commands.tail, gateway.url, "bob", "", "general", None, True)
        )
        await wait_for(lambda: gateway.subscribed("general", "bob"), 10)
        await owner.delete("general")
        assert await asyncio.wait_for(task, 10) == 0
    finally:
        await owner.close()
    frames = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert frames[-1]["user"] == "bob" and frames[-1]["event"] == "join"
