"""`parley up` end to end: start a whole cluster, chat through it, Ctrl-C it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support.client import ChatClient
from support.cluster import child_env, free_port_block, port_is_free
from support.wait import wait_for
from support.wscat import require_wscat, wscat_execute

NODES = 3


@dataclass
class Up:
    """A running `python -m parley up` and everything it printed."""

    proc: asyncio.subprocess.Process
    ports: list[int]
    lines: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        """All output so far."""
        return "\n".join(self.lines)

    def url(self) -> str | None:
        """The gateway URL from the ready banner, once printed."""
        match = re.search(r"gateway-0 URL: (ws://\S+)", self.text)
        return match.group(1) if match else None

    def child_pids(self) -> dict[str, int]:
        """{name: pid} from the "started NAME pid N" lines."""
        return {m[1]: int(m[2]) for m in re.finditer(r"started (\S+) pid (\d+)", self.text)}


def _alive(pid: int) -> bool:
    """True when a process `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
async def up(tmp_path: Path) -> AsyncIterator[Up]:
    """`python -m parley up` (3 nodes, 1 gateway) on free ports, killed afterwards if still up."""
    ws_port = free_port_block(1)
    base_grpc = free_port_block(NODES)
    base_node_http = free_port_block(NODES)
    gateway_http = free_port_block(1)
    ports = [
        ws_port,
        gateway_http,
        *range(base_grpc, base_grpc + NODES),
        *range(base_node_http, base_node_http + NODES),
    ]
    assert len(set(ports)) == len(ports), "port blocks overlapped; rerun"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "parley", "up",
        "--nodes", str(NODES),
        "--gateways", "1",
        "--port", str(ws_port),
        "--base-grpc", str(base_grpc),
        "--base-node-http", str(base_node_http),
        "--base-gateway-http", str(gateway_http),
        "--data-dir", str(tmp_path / "data"),
        "--store", "sqlite",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=child_env(),
        start_new_session=True,
    )  # fmt: skip
    state = Up(proc, ports)

    async def collect() -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            state.lines.append(raw.decode(errors="replace").rstrip("\n"))

    reader = asyncio.create_task(collect())
    try:
        yield state
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        for pid in state.child_pids().values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        print("\n".join(state.lines[-200:]))  # shown by pytest when the test failed


async def _ready_url(up: Up) -> str:
    """Wait for the ready banner and return the URL (failing fast if `parley up` exits)."""

    def ready() -> str | None:
        if up.proc.returncode is not None:
            raise AssertionError(f"parley up exited {up.proc.returncode}:\n{up.text}")
        return up.url()

    return await wait_for(ready, timeout=60, interval=0.05, message="the ready banner")


async def test_up_round_trip_and_clean_ctrl_c(up: Up) -> None:
    """`parley up` serves a websockets client a round trip, and Ctrl-C stops everything."""
    url = await _ready_url(up)
    assert re.search(r"wscat -c 'ws://127\.0\.0\.1:\d+/ws\?user=alice'", up.text)
    pids = up.child_pids()
    assert sorted(pids) == ["gateway-0", "node-0", "node-1", "node-2"]

    # A websockets client: create, join, send, and see the message.
    async with await ChatClient.connect(url, "alice") as alice:
        created = await alice.create("general")
        assert created["type"] == "created" and created["owner"] == "alice", created
        joined = await alice.join("general")
        assert joined["type"] == "joined", joined
        ack = await alice.send("general", "hello from websockets", msg_id="m1")
        assert ack["type"] == "ack" and ack["id"] == "m1", ack
        message = await alice.next_of(
            "message", room="general", where=lambda f: f["seq"] == ack["seq"]
        )
        assert message["text"] == "hello from websockets" and message["from"] == "alice"

    # Ctrl-C: the supervisor stops every child and exits 0.
    os.kill(up.proc.pid, signal.SIGINT)
    async with asyncio.timeout(30):
        code = await up.proc.wait()
    assert code == 0, up.text
    for name, pid in pids.items():
        assert not _alive(pid), f"{name} (pid {pid}) still running after parley up exited"
    await wait_for(
        lambda: all(port_is_free(p) for p in up.ports), timeout=10, message="ports freed"
    )


async def test_up_with_wscat(up: Up) -> None:
    """The real wscat, as the README shows, chats through `parley up` with a websockets client."""
    require_wscat()
    url = await _ready_url(up)
    async with await ChatClient.connect(url, "alice") as alice:
        assert (await alice.create("general"))["type"] == "created"
        assert (await alice.join("general"))["type"] == "joined"
        first = await alice.send("general", "hello from websockets")
        frames = await wscat_execute(
            f"{url}?user=bob",
            [
                {"type": "join", "room": "general", "id": "j"},
                {"type": "send", "room": "general", "text": "hi from wscat", "id": "b1"},
            ],
        )
        bob_ack = next(f for f in frames if f.get("type") == "ack")
        assert bob_ack["id"] == "b1" and bob_ack["seq"] > first["seq"]
        heard = await alice.next_of("message", room="general", where=lambda f: f["from"] == "bob")
        assert heard["text"] == "hi from wscat" and heard["seq"] == bob_ack["seq"]
        # bob's join backlog held alice's earlier message
        assert any(f.get("text") == "hello from websockets" for f in frames), frames
    os.kill(up.proc.pid, signal.SIGINT)
    async with asyncio.timeout(30):
        assert await up.proc.wait() == 0, up.text


async def test_up_says_when_a_child_dies(up: Up) -> None:
    """A child that dies is reported by name; the rest keep serving; SIGTERM still exits 0."""
    url = await _ready_url(up)
    pids = up.child_pids()
    os.kill(pids["node-2"], signal.SIGKILL)
    await wait_for(
        lambda: "node-2 exited unexpectedly" in up.text, timeout=10, message="death report"
    )
    assert up.proc.returncode is None
    async with await ChatClient.connect(url, "carol") as carol:
        assert (await carol.ping())["type"] == "pong"
    os.kill(up.proc.pid, signal.SIGTERM)
    async with asyncio.timeout(30):
        assert await up.proc.wait() == 0, up.text
    assert not any(_alive(pid) for pid in pids.values())
