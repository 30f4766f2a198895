"""A connection's own behaviour: bad frames, rate limit, size limit, slow consumers."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
from typing import Any

import pytest
from parley.gateway.app import Gateway
from parley.gateway.auth import Identity
from parley.gateway.session import MAX_CORKED, Session
from parley.gateway.wire import text_frame
from parley.protocol import frames
from parley.protocol.errors import ErrorCode
from prometheus_client import REGISTRY
from support.client import ChatClient
from support.wait import wait_for
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.protocol import State

BAD_FRAMES = [
    "", "nope", "[]", "42", '{"type":"fly"}', '{"type":"join"}', '{"type":"join","room":"A"}',
    '{"type":"send","room":"a","text":""}', '{"type":"history","room":"a","limit":0}',
    '{"type":"ping","id":5}', "[" * 50_000, '{"type":"join","room":"a","since":-1}',
]  # fmt: skip


async def test_bad_frames_get_errors_and_the_connection_lives(gateway: Gateway) -> None:
    """Every bad frame is answered with bad_request; the connection stays usable."""
    async with await ChatClient.connect(gateway.url, "alice") as alice:
        for raw in BAD_FRAMES:
            await alice.send_frame(raw)
            error = await alice.next_of("error")
            assert error["code"] == "bad_request", raw
        assert (await alice.ping())["type"] == "pong"
        assert not alice.closed.is_set()


async def test_error_echoes_the_request_id(gateway: Gateway) -> None:
    """An invalid request with a readable id gets its error with that id."""
    async with await ChatClient.connect(gateway.url, "alice") as alice:
        reply = await alice.request({"type": "join", "room": "Not Valid", "id": "x1"})
        assert reply == {"type": "error", "id": "x1", "code": "bad_request",
                         "message": reply["message"]}  # fmt: skip


async def test_binary_frame_is_bad_request(gateway: Gateway) -> None:
    """A binary frame is answered with an error, not a close."""
    async with await ChatClient.connect(gateway.url, "alice") as alice:
        await alice.ws.send(b'{"type":"ping"}')
        assert (await alice.next_of("error"))["code"] == "bad_request"
        assert (await alice.ping())["type"] == "pong"


async def test_oversized_frame_closes_with_1009(node: Any, start_gateway: Any) -> None:
    """A frame over max_frame_bytes closes the connection with 1009."""
    gateway = await start_gateway({"node-0": node[1]}, max_frame_bytes=1024)
    async with await ChatClient.connect(gateway.url, "alice") as alice:
        await alice.send_frame(json.dumps({"type": "ping", "pad": "x" * 2000}))
        await asyncio.wait_for(alice.closed.wait(), 10)
        assert alice.close_code == 1009


async def test_rate_limit_answers_rate_limited(node: Any, start_gateway: Any) -> None:
    """Frames beyond the burst are dropped with a rate_limited error carrying their id."""
    gateway = await start_gateway({"node-0": node[1]}, rate_limit=0.001, rate_burst=5)
    async with await ChatClient.connect(gateway.url, "alice") as alice:
        for i in range(7):
            await alice.send_frame({"type": "ping", "id": f"p{i}"})
        await wait_for(lambda: len(alice.frames) >= 7, 10, message="7 replies")
        assert [f["type"] for f in alice.frames] == ["pong"] * 5 + ["error"] * 2
        assert [f.get("code") for f in alice.frames[5:]] == ["rate_limited"] * 2
        assert [f["id"] for f in alice.frames] == [f"p{i}" for i in range(7)]
        assert not alice.closed.is_set()


async def test_sustained_flood_closes_with_1008(node: Any, start_gateway: Any) -> None:
    """Dropping more than three bursts' worth of frames closes the connection (1008)."""
    gateway = await start_gateway({"node-0": node[1]}, rate_limit=0.001, rate_burst=4)
    async with await ChatClient.connect(gateway.url, "alice") as alice:
        with pytest.raises(ConnectionClosed):
            for _ in range(1000):
                await alice.send_frame('{"type":"ping"}')
                await asyncio.sleep(0)
        await asyncio.wait_for(alice.closed.wait(), 10)
        assert alice.close_code == 1008


class _FullTransport:
    """A transport whose buffer is over every limit."""

    def get_write_buffer_size(self) -> int:
        return 10**9


class _StuckConnection:
    """A connection whose client never reads: send() never returns."""

    def __init__(self) -> None:
        self.transport = _FullTransport()
        self.closed_with: tuple[int, str] | None = None
        self.close_code: int | None = None
        self.sent = 0
        self._never = asyncio.Event()

    async def send(self, data: bytes, text: bool = False) -> None:
        self.sent += 1
        await self._never.wait()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed_with = (code, reason)
        self.close_code = code
        self._never.set()

    def __aiter__(self) -> Any:
        return self

    async def __anext__(self) -> str:
        await self._never.wait()
        raise StopAsyncIteration


async def test_full_outbound_queue_closes_with_1013() -> None:
    """A client that does not read is disconnected with 1013 once its queue is full."""
    conn = _StuckConnection()

    async def handle(_session: Session, _request: Any) -> None:
        raise AssertionError("no requests expected")

    session = Session(conn, Identity("alice"), handle, queue_size=8, rate=10.0, burst=10)  # type: ignore[arg-type]
    runner = asyncio.create_task(session.run())
    pong = frames.pong()
    session.reply(pong)
    await wait_for(lambda: conn.sent == 1, 5, message="writer blocked in send")
    for _ in range(8):
        session.reply(pong)
    assert conn.closed_with is None
    session.reply(pong)  # the ninth frame does not fit
    assert session.closed
    await asyncio.wait_for(runner, 5)
    assert conn.closed_with == (1013, "slow consumer")
    session.reply(pong)  # after the close, frames are dropped quietly


class _RecordingTransport:
    """A transport that keeps what is written, one entry per write call."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def get_write_buffer_size(self) -> int:
        return 0

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))


class _OpenConnection(_StuckConnection):
    """An open connection whose frames land in a recording transport."""

    def __init__(self) -> None:
        super().__init__()
        self.transport = _RecordingTransport()  # type: ignore[assignment]
        self.protocol = type("P", (), {"state": State.OPEN})()


async def test_frames_of_one_loop_turn_go_out_in_one_write_in_order() -> None:
    """A batch's acks are written together (one write call, not one per
    ack), in the order they were made; a frame made right before the
    connection is closed still goes out before the close."""
    conn = _OpenConnection()

    async def handle(_session: Session, _request: Any) -> None:
        raise AssertionError("no requests expected")

    session = Session(conn, Identity("alice"), handle, queue_size=8, rate=10.0, burst=10)  # type: ignore[arg-type]
    for n in range(10):
        session.reply(frames.pong(f"p{n}"))
    assert conn.transport.writes == []  # not yet: at the end of this turn
    await asyncio.sleep(0)
    assert len(conn.transport.writes) == 1
    ids = [json.loads(f.data)["id"] for f in _frames(conn.transport.writes[0])]
    assert ids == [f"p{n}" for n in range(10)]

    for n in range(MAX_CORKED + 5):  # a long turn goes out in pieces, still in order
        session.reply(frames.pong(f"q{n}"))
    await asyncio.sleep(0)
    ids = [json.loads(f.data)["id"] for w in conn.transport.writes[1:] for f in _frames(w)]
    assert ids == [f"q{n}" for n in range(MAX_CORKED + 5)]
    assert len(conn.transport.writes) == 3

    # the fan-out writes at once, after what was corked before it
    session.reply(frames.pong("before"))
    delivery = frames.pong("delivery").encode()
    session.send_frames([delivery], text_frame(delivery))
    assert [json.loads(_frames(w)[0].data)["id"] for w in conn.transport.writes[-2:]] == [
        "before",
        "delivery",
    ]

    session.reply(frames.error(ErrorCode.UNAUTHORIZED, "token expired"))
    session.close(4001, "token expired", "token_expired")
    await asyncio.sleep(0.01)
    assert json.loads(_frames(conn.transport.writes[-1])[-1].data)["code"] == "unauthorized"
    assert conn.closed_with == (4001, "token expired")


def _frames(data: bytes) -> list[Frame]:
    """The (unmasked, server-sent) frames in `data`."""
    found = []
    while data:
        length = data[1] & 0x7F
        start = 2
        if length == 126:
            length, start = int.from_bytes(data[2:4], "big"), 4
        assert length < 127
        found.append(Frame(Opcode(data[0] & 0x0F), data[start : start + length]))
        data = data[start + length :]
    return found


def _slow_consumer_disconnects() -> float:
    return (
        REGISTRY.get_sample_value("parley_ws_disconnects_total", {"reason": "slow_consumer"}) or 0.0
    )


async def _raw_client(url: str, first_frame: str) -> asyncio.StreamWriter:
    """A hand-made WebSocket client with a tiny receive buffer that never reads."""
    host, port = url.removeprefix("ws://").split("/")[0].split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    reader, writer = await asyncio.open_connection(sock=sock)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET /ws?user=bob HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101"), head
    writer.write(Frame(Opcode.TEXT, first_frame.encode()).serialize(mask=True, extensions=[]))
    writer.transport.pause_reading()  # type: ignore[attr-defined]
    return writer


async def test_client_that_stops_reading_is_disconnected(node: Any, start_gateway: Any) -> None:
    """Over a real socket: a member that never reads is dropped, the others are served."""
    gateway = await start_gateway(
        {"node-0": node[1]}, outbound_queue=4, rate_limit=1e6, rate_burst=100_000
    )
    before = _slow_consumer_disconnects()
    async with await ChatClient.connect(gateway.url, "alice") as alice:
        await alice.create("r")
        await alice.join("r")
        bob = await _raw_client(gateway.url, json.dumps({"type": "join", "room": "r"}))
        await wait_for(lambda: len(gateway._fanout.feed("r").sockets) == 2, 5, message="bob in")
        text = "x" * 4000
        sent = 0
        while len(gateway._fanout.feed("r").sockets) == 2 and sent < 20_000:
            await asyncio.gather(*(alice.send("r", text) for _ in range(100)))
            sent += 100
        await wait_for(lambda: _slow_consumer_disconnects() == before + 1, 10, message="counted")
        await alice.wait_deliveries("r", sent + 1, timeout=30)
        assert (await alice.ping())["type"] == "pong"
        bob.close()
