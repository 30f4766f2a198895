"""A lean WebSocket client for the load generator (RFC 6455, client side).

The generator must out-run the servers it measures from one core. The
`websockets` client spends ~15 µs of Python per received frame (a
coroutine hand-off per frame, a queue, UTF-8 checks, and the
permessage-deflate it offers by default); this one parses frames straight
out of `data_received` and hands each text frame to a callback, about a
third of that. It speaks exactly what the benchmark needs: one handshake
without extensions, text frames out (masked with a zero key, which RFC
6455 allows: the payload goes out as it is), text frames in (fragmented
ones reassembled), pings answered, close.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from collections.abc import Callable
from typing import cast
from urllib.parse import urlsplit

OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
ZERO_MASK = b"\x00\x00\x00\x00"


def encode_frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """One final client frame (masked with the zero key)."""
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
    return header + ZERO_MASK + payload


class HandshakeError(Exception):
    """The server did not switch protocols."""


class WsProtocol(asyncio.Protocol):
    """One connection: the handshake, then frames to `on_text`."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self._early: list[str] = []
        self.upgraded: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._on_text: Callable[[str], None] = self._early.append
        self._fragments: list[bytes] = []

    @property
    def on_text(self) -> Callable[[str], None]:
        """Takes every text frame; until one is set they are kept (a
        server may speak first, in the handshake's own packet)."""
        return self._on_text

    @on_text.setter
    def on_text(self, handler: Callable[[str], None]) -> None:
        early, self._early = self._early, []
        self._on_text = handler
        for text in early:
            handler(text)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # (uvloop's is not a subclass)
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.upgraded.done():
            self.upgraded.set_exception(exc or HandshakeError("closed during the handshake"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if not self.upgraded.done():
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buffer[: buffer.find(b"\r\n")])
            del buffer[: end + 4]
            if b" 101 " not in status:
                self.upgraded.set_exception(HandshakeError(status.decode(errors="replace")))
                assert self.transport is not None
                self.transport.close()
                return
            self.upgraded.set_result(None)
        self._frames()

    def _frames(self) -> None:
        buffer, start, size = self.buffer, 0, len(self.buffer)
        while size - start >= 2:
            first, second = buffer[start], buffer[start + 1]
            length, at = second & 0x7F, start + 2
            if length == 126:
                if size - at < 2:
                    break
                (length,) = struct.unpack_from("!H", buffer, at)
                at += 2
            elif length == 127:
                if size - at < 8:
                    break
                (length,) = struct.unpack_from("!Q", buffer, at)
                at += 8
            if second & 0x80:
                at += 4  # (a server never masks; skip a key if one did)
            if size - at < length:
                break
            payload = bytes(buffer[at : at + length])
            start = at + length
            self._frame(first & 0x80, first & 0x0F, payload)
        del buffer[:start]

    def _frame(self, fin: int, opcode: int, payload: bytes) -> None:
        if opcode in (OP_TEXT, OP_BINARY, OP_CONTINUATION):
            if not fin:
                self._fragments.append(payload)
                return
            if self._fragments:
                payload = b"".join([*self._fragments, payload])
                self._fragments.clear()
            self._on_text(payload.decode())
        elif opcode == OP_PING:
            self.write(payload, OP_PONG)
        elif opcode == OP_CLOSE:
            self.write(payload[:2], OP_CLOSE)
            assert self.transport is not None
            self.transport.close()

    def write(self, payload: bytes, opcode: int = OP_TEXT) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode_frame(payload, opcode))


async def connect(url: str, timeout: float = 60.0) -> WsProtocol:
    """Open `ws://host:port/path?query` and complete the handshake."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    loop = asyncio.get_running_loop()

    async def opened() -> WsProtocol:
        _, protocol = await loop.create_connection(lambda: WsProtocol(request), host, port)
        await protocol.upgraded
        return protocol

    return await asyncio.wait_for(opened(), timeout)
