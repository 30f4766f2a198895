"""`python -m parley send/tail/rooms` as subprocesses against a real local cluster."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import jwt
from parley.client.connection import Connection
from support.cluster import LocalCluster

DEADLINE = 20.0
"""Seconds any one step may take."""

SECRET = "parley-client-test-secret-0123456789"
"""HS256 key for the auth-on cluster (32+ bytes, as RFC 7518 asks)."""


def client_env() -> dict[str, str]:
    """The environment for a client subprocess: no PARLEY_* leaking in from the shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


async def parley(*args: str) -> tuple[int, str, str]:
    """Run `python -m parley ARGS` to completion; returns (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "parley",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=client_env(),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), DEADLINE)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@asynccontextmanager
async def tail_process(*args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """`python -m parley tail ARGS` running in the background, killed afterwards.

    If the test fails inside, the tail's stderr is printed (pytest shows it).
    """
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "parley",
        "tail",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=client_env(),
    )
    try:
        yield proc
    except BaseException:
        if proc.returncode is None:
            proc.kill()
        if proc.stderr is not None:
            err = await asyncio.wait_for(proc.stderr.read(), DEADLINE)
            print(f"tail stderr:\n{err.decode(errors='replace')}")
        raise
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def read_line(proc: asyncio.subprocess.Process) -> str:
    """The next stdout line of a running process (fails after DEADLINE)."""
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), DEADLINE)
    assert line, "the process closed its stdout"
    return line.decode().rstrip("\n")


async def make_room(url: str, owner: str, room: str, *members: str) -> None:
    """Create `room` owned by `owner` and make `members` members."""
    conn = Connection(url, owner)
    await conn.connect()
    try:
        await conn.create(room)
        await conn.join(room)
    finally:
        await conn.close()
    for member in members:
        conn = Connection(url, member)
        await conn.connect()
        try:
            await conn.join(room)
        finally:
            await conn.close()


def closed_port() -> int:
    """A loopback port nothing listens on (a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_send_exits_zero_when_acked_and_one_when_not_member(
    cluster: LocalCluster,
) -> None:
    """send prints the seq and exits 0 for a member; a non-member gets exit 1 and a hint."""
    url = cluster.gateway_url()
    await make_room(url, "alice", "general")
    code, out, err = await parley("send", "--url", url, "--user", "alice", "general", "hi")
    assert code == 0, err
    assert out.strip().isdigit()
    code, out, err = await parley("send", "--url", url, "--user", "mallory", "general", "hi")
    assert code == 1
    assert "not a member" in err and out == ""
    code, _, err = await parley("send", "--url", url, "--user", "alice", "nowhere", "hi")
    assert code == 1 and err


async def test_usage_and_unreachable_exit_codes() -> None:
    """A bad room name exits 2; nothing listening at the URL exits 3."""
    url = f"ws://127.0.0.1:{closed_port()}/ws"
    code, _, err = await parley("send", "--url", url, "--user", "alice", "Not A Room", "hi")
    assert code == 2 and "invalid room name" in err
    code, _, err = await parley("rooms", "--url", url, "--user", "alice")
    assert code == 3 and "cannot reach" in err


async def test_refused_token_exits_four(
    make_cluster: Callable[..., Awaitable[LocalCluster]],
) -> None:
    """With auth on, a bad token exits 4 and a good one works."""
    cluster = await make_cluster(nodes=3, gateways=1, jwt_secret=SECRET)
    url = cluster.gateway_url()
    code, _, err = await parley("rooms", "--url", url, "--token", "not-a-jwt")
    assert code == 4 and "401" in err
    token = jwt.encode({"sub": "alice"}, SECRET, algorithm="HS256")
    code, out, err = await parley("rooms", "--url", url, "--token", token, "--json")
    assert code == 0, err
    assert json.loads(out) == []


async def test_rooms_table_and_json(cluster: LocalCluster) -> None:
    """rooms prints a table, or with --json a JSON array of the §5 room objects."""
    url = cluster.gateway_url()
    await make_room(url, "alice", "general", "bob")
    await make_room(url, "bob", "random")
    code, out, err = await parley("rooms", "--url", url, "--user", "carol")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["ROOM", "OWNER", "MEMBERS"]
    assert [line.split()[:3] for line in lines[1:]] == [
        ["general", "alice", "2"],
        ["random", "bob", "1"],
    ]
    code, out, err = await parley("rooms", "--url", url, "--user", "carol", "--json")
    assert code == 0, err
    listing = {r["room"]: r for r in json.loads(out)}
    assert listing["general"]["owner"] == "alice" and listing["general"]["members"] == 2
    assert set(listing["random"]) >= {"room", "owner", "members", "last_seq", "administrator"}


async def test_tail_prints_lines_and_exits_when_room_deleted(cluster: LocalCluster) -> None:
    """tail prints `[seq] HH:MM:SS user: text` lines and exits 0 when the room is deleted."""
    url = cluster.gateway_url()
    await make_room(url, "alice", "general")
    owner = Connection(url, "alice")
    await owner.connect()
    try:
        await owner.send("general", "first")
        async with tail_process("--url", url, "--user", "bob", "general") as tail:
            assert re.fullmatch(r"\[1\] \d\d:\d\d:\d\d alice: first", await read_line(tail))
            assert re.fullmatch(r"\[2\] \d\d:\d\d:\d\d \* bob joined", await read_line(tail))
            await owner.send("general", "multi\nline")
            assert (await read_line(tail)).endswith("alice: multi ⏎ line")
            await owner.delete("general")
            assert await asyncio.wait_for(tail.wait(), DEADLINE) == 0
            assert tail.stderr is not None
            assert b"was deleted" in await tail.stderr.read()
    finally:
        await owner.close()


async def test_tail_json_survives_gateway_restart_without_gap_or_duplicate(
    make_cluster: Callable[..., Awaitable[LocalCluster]],
) -> None:
    """tail --json follows through a gateway kill and restart: every seq once, in order."""
    cluster = await make_cluster(nodes=3, gateways=2)
    await make_room(cluster.gateway_url(1), "alice", "ops")
    sender = Connection(cluster.gateway_url(1), "alice")
    await sender.connect()
    try:
        await sender.send("ops", "m0")
        args = ("--url", cluster.gateway_url(0), "--user", "bob", "--json", "--since", "0", "ops")
        async with tail_process(*args) as tail:
            frames = [json.loads(await read_line(tail)) for _ in range(2)]  # m0, bob joined
            cluster.kill_gateway(0)
            for i in range(1, 6):
                await sender.send("ops", f"m{i}", retry_for=DEADLINE)
            await cluster.restart_gateway(0)
            for i in range(6, 9):
                await sender.send("ops", f"m{i}", retry_for=DEADLINE)
            while len([f for f in frames if f.get("type") == "message"]) < 9:
                frames.append(json.loads(await read_line(tail)))
            seqs = [f["seq"] for f in frames]
            assert seqs == list(range(1, len(seqs) + 1))
            assert [f["text"] for f in frames if f["type"] == "message"] == [
                f"m{i}" for i in range(9)
            ]
            assert all(f["room"] == "ops" and "ts" in f for f in frames)
            assert tail.returncode is None  # still following
    finally:
        await sender.close()
