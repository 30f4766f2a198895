"""Where a client's JWT comes from, and when to ask for a fresh one.

A token given once (`--token`) cannot be refreshed: the gateway closes the
connection (4001) when it expires. A token file (`--token-file`, kept
current by whatever logs the user in) is read again before the token in use
expires, and the fresh token is handed to the gateway in-connection (`auth`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import jwt

TokenSource = Callable[[], str]
"""Returns the freshest token there is ("" when none)."""

REFRESH_AHEAD = 0.2
"""Refresh once this fraction of the token's remaining life is left..."""
REFRESH_AHEAD_MIN = 10.0
"""...but never later than this many seconds before it expires."""
RETRY_SECONDS = 5.0
"""How soon to look again when the source had nothing fresher."""


def file_source(path: str) -> TokenSource:
    """A source that reads `path` each time (one token, surrounding space ignored)."""

    def read() -> str:
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError:
            return ""

    return read


def expires_at(token: str) -> float | None:
    """The token's `exp` (unix seconds), read without checking the signature
    (only the gateway can check it; the client only needs to know when)."""
    if not token:
        return None
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return None
    exp = claims.get("exp")
    return float(exp) if isinstance(exp, int | float) else None


def refresh_delay(expires: float, now: float | None = None) -> float:
    """Seconds from now until a token expiring at `expires` should be replaced."""
    now = time.time() if now is None else now
    remaining = expires - now
    ahead = max(REFRESH_AHEAD_MIN, remaining * REFRESH_AHEAD)
    return max(0.0, remaining - ahead)
