"""WebSocket text frames as bytes, built once and written to many sockets.

A server's frames are not masked (RFC 6455 §5.1) and the gateway turns
compression off, so the bytes of a frame are the same for every client: the
fan-out frames each entry once and writes the same bytes to every socket,
several frames in one write when a batch carries several entries.
"""

from __future__ import annotations

import struct

_FIN_TEXT = 0x81
"""FIN bit set, opcode 1 (text)."""


def text_frame(payload: bytes) -> bytes:
    """One complete, unmasked WebSocket text frame carrying `payload` (UTF-8)."""
    size = len(payload)
    if size < 126:
        header = bytes((_FIN_TEXT, size))
    elif size < 65536:
        header = struct.pack("!BBH", _FIN_TEXT, 126, size)
    else:
        header = struct.pack("!BBQ", _FIN_TEXT, 127, size)
    return header + payload
