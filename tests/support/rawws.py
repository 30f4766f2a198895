"""A WebSocket client built by hand, byte by byte, for sending what no
library would: invalid UTF-8, truncated frames, frames split across TCP
segments, half a handshake."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import struct
from dataclasses import dataclass

OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bytes | None = None) -> bytes:
    """A client frame (masked, as RFC 6455 requires of clients)."""
    key = os.urandom(4) if mask is None else mask
    head = bytes([(0x80 if fin else 0) | opcode])
    size = len(payload)
    if size < 126:
        head += bytes([0x80 | size])
    elif size < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", size)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", size)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + key + masked


@dataclass
class Received:
    """What the server sent back: text frames, and the close code (None: none, or reset)."""

    texts: list[str]
    close_code: int | None


class RawSocket:
    """One TCP connection to a gateway, upgraded by hand."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host: str, port: int, target: str) -> RawSocket:
        """Connect and complete the upgrade to `target` (e.g. /ws?user=x).

        Raises:
            ConnectionError: the server did not answer 101.
        """
        reader, writer = await asyncio.open_connection(host, port)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            writer.close()
            raise ConnectionError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
        return cls(reader, writer)

    async def send(self, data: bytes, *, piece: int = 0) -> None:
        """Write bytes; with `piece`, that many at a time, each its own TCP segment."""
        if not piece:
            self.writer.write(data)
            await self.writer.drain()
            return
        for start in range(0, len(data), piece):
            self.writer.write(data[start : start + piece])
            await self.writer.drain()
            await asyncio.sleep(0.001)  # (let each piece leave as its own segment)

    async def receive(self, frames: int, timeout: float) -> Received:
        """Read until `frames` text frames arrived, a close frame, EOF or the timeout."""
        texts: list[str] = []
        try:
            async with asyncio.timeout(timeout):
                while len(texts) < frames:
                    first, second = await self.reader.readexactly(2)
                    size = second & 0x7F
                    if size == 126:
                        (size,) = struct.unpack("!H", await self.reader.readexactly(2))
                    elif size == 127:
                        (size,) = struct.unpack("!Q", await self.reader.readexactly(8))
                    payload = await self.reader.readexactly(size)
                    opcode = first & 0x0F
                    if opcode == OP_TEXT:
                        texts.append(payload.decode())
                    elif opcode == OP_CLOSE:
                        code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                        return Received(texts, code)
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass
        return Received(texts, None)

    def abort(self) -> None:
        self.writer.transport.abort()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()
