"""`parley send`, `parley tail` and `parley rooms`: the client for scripts.

Exit codes (also in docs/client.md):

====  ==========================================================
0     success (`send`: acknowledged; `tail`: room deleted or EOF)
1     the server refused the request (error frame, e.g. not_member)
2     usage: a bad room name, empty or too long text, bad URL
3     the gateway is unreachable or the connection was lost
4     unauthorized: the handshake was refused (HTTP 401)
130   interrupted (Ctrl-C)
====  ==========================================================

Messages go to stdout, diagnostics to stderr, each prefixed with `parley:`.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TextIO

from parley.client.connection import Connection
from parley.client.errors import (
    ConnectionLost,
    GatewayUnreachable,
    RequestTimeout,
    ServerError,
    Unauthorized,
)
from parley.client.events import Deleted, Entry, Status
from parley.client.format import MAX_TEXT, entry_line, rooms_table, valid_room
from parley.client.tokens import TokenSource

EXIT_OK = 0
EXIT_SERVER = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_UNAUTHORIZED = 4
EXIT_INTERRUPTED = 130

SEND_RETRY_SECONDS = 15.0
"""How long `send` keeps retrying (same id, stored once) through a reconnect."""


JOIN_RETRY_SECONDS = 15.0
"""How long `tail` retries a join the gateway says is `unavailable`."""


class UsageError(Exception):
    """Bad arguments detected before anything was sent."""


def _say(message: str, err: TextIO | None = None) -> None:
    print(f"parley: {message}", file=err or sys.stderr, flush=True)


def _check_url(url: str) -> None:
    if not url.startswith(("ws://", "wss://")):
        raise UsageError(f"--url must start with ws:// or wss:// (got {url!r})")


def _check_room(room: str) -> None:
    if not valid_room(room):
        raise UsageError(
            f"invalid room name {room!r}: use lowercase letters, digits, '-' and '_' "
            "(at most 64, starting with a letter or digit)"
        )


def _run(main: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run one command and turn every failure into its documented exit code."""
    try:
        return asyncio.run(main())
    except UsageError as exc:
        _say(str(exc))
        return EXIT_USAGE
    except Unauthorized as exc:
        _say(str(exc))
        return EXIT_UNAUTHORIZED
    except ServerError as exc:
        _say(str(exc))
        return EXIT_UNAUTHORIZED if exc.code == "unauthorized" else EXIT_SERVER
    except (GatewayUnreachable, ConnectionLost, RequestTimeout) as exc:
        _say(str(exc))
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def send(
    url: str,
    user: str,
    token: str | None,
    room: str,
    text: str,
    token_source: TokenSource | None = None,
) -> int:
    """Send one message; print its seq and exit 0 once the gateway acknowledged it.

    The send is retried with the same id through a dropped connection, so a
    message is stored at most once. A room this user has not joined gives
    exit 1 with a hint to join it first.
    """

    async def main() -> int:
        _check_url(url)
        _check_room(room)
        if not text.strip():
            raise UsageError("the message text is empty")
        if len(text) > MAX_TEXT:
            raise UsageError(f"the message is {len(text)} characters; at most {MAX_TEXT}")
        conn = Connection(url, user, token or "", token_source=token_source)
        await conn.connect()
        try:
            seq = await conn.send(room, text, retry_for=SEND_RETRY_SECONDS)
        except ServerError as exc:
            if exc.code == "not_member":
                _say(
                    f"{user} is not a member of room {room!r}; join it first "
                    f"(`parley tail {room}` or `parley chat`)"
                )
                return EXIT_SERVER
            raise
        finally:
            await conn.close()
        print(seq, flush=True)
        return EXIT_OK

    return _run(main)


async def _join_patiently(conn: Connection, room: str, since: int | None) -> None:
    """Join, retrying while the room is briefly `unavailable` (e.g. mid-election)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + JOIN_RETRY_SECONDS
    delay = 0.2
    while True:
        try:
            await conn.join(room, since=since)
            return
        except ServerError as exc:
            if exc.code != "unavailable" or loop.time() + delay > deadline:
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, 2.0)


def tail(
    url: str,
    user: str,
    token: str | None,
    room: str,
    since: int | None,
    as_json: bool,
    token_source: TokenSource | None = None,
) -> int:
    """Join `room` and print its entries forever, one line each.

    Text lines look like `[seq] HH:MM:SS user: text` (presence:
    `[seq] HH:MM:SS * user joined`); with `as_json` each line is the entry
    frame as JSON. Follows across gateway restarts without gap or repeat;
    returns 0 when the room is deleted.
    """

    async def main() -> int:
        _check_url(url)
        _check_room(room)
        if since is not None and since < 0:
            raise UsageError("--since must be 0 or more")
        conn = Connection(url, user, token or "", token_source=token_source)
        await conn.connect()
        try:
            stream = conn.events(room)
            await _join_patiently(conn, room, since)
            async for event in stream:
                if isinstance(event, Entry):
                    line = (
                        json.dumps(event.frame, ensure_ascii=False)
                        if as_json
                        else entry_line(event)
                    )
                    print(line, flush=True)
                elif isinstance(event, Deleted):
                    _say(f"room {room!r} was deleted")
                    return EXIT_OK
                elif isinstance(event, Status):
                    if event.state in ("reconnecting", "connected", "gap", "error"):
                        _say(event.message)
                    elif event.state == "closed":
                        _say(event.message)
                        return (
                            EXIT_UNAUTHORIZED
                            if event.reason == "unauthorized"
                            else EXIT_UNREACHABLE
                        )
            return EXIT_OK
        finally:
            await conn.close()

    return _run(main)


def rooms(
    url: str, user: str, token: str | None, as_json: bool, token_source: TokenSource | None = None
) -> int:
    """Print the rooms as an aligned table, or as one JSON array with `as_json`."""

    async def main() -> int:
        _check_url(url)
        conn = Connection(url, user, token or "", token_source=token_source, reconnect=False)
        await conn.connect()
        try:
            listing = await conn.rooms()
        finally:
            await conn.close()
        if as_json:
            print(json.dumps(listing, ensure_ascii=False), flush=True)
        elif listing:
            print(rooms_table(listing), flush=True)
        else:
            _say("no rooms yet; create one in `parley chat`")
        return EXIT_OK

    return _run(main)
