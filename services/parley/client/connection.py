"""A reusable client of the gateway's WebSocket protocol (DESIGN §5).

`Connection` speaks only the §5 contract, so it works against any gateway:

* request/reply matched by `id` (every request carries a fresh one);
* pushed entries delivered per room strictly in seq order: duplicates
  (seq <= last) are dropped, and a gap (seq > last + 1) is filled from
  `history` before anything after it is shown, never left as a silent hole;
* automatic reconnect with exponential backoff and jitter that re-joins every
  joined room with `since=<last seq delivered>`, so nothing is missed and
  nothing is shown twice;
* clear exceptions: `GatewayUnreachable`, `Unauthorized` (HTTP 401 at the
  handshake) and `ServerError` for `error` frames.

Usage::

    async with Connection(url, "alice") as conn:
        stream = conn.events("general")
        await conn.join("general")
        seq = await conn.send("general", "hi")
        async for event in stream:
            ...
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import secrets
import time
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
)

from parley.client.cursor import RoomCursor, Verdict
from parley.client.errors import (
    ConnectionLost,
    GatewayUnreachable,
    ParleyError,
    RequestTimeout,
    ServerError,
    Unauthorized,
)
from parley.client.events import Deleted, Entry, Event, Notice, Online, Status
from parley.client.tokens import RETRY_SECONDS, TokenSource, expires_at, refresh_delay
from parley.protocol.requests import dm_room

# The reply type(s) each request type expects; used to match a reply that
# arrives without an `id` (a gateway may omit it) to the oldest waiting request.
_REPLY_TYPES: dict[str, frozenset[str]] = {
    "rooms": frozenset({"rooms"}),
    "create": frozenset({"created"}),
    "join": frozenset({"joined"}),
    "send": frozenset({"ack"}),
    "history": frozenset({"history"}),
    "members": frozenset({"members"}),
    "leave": frozenset({"left"}),
    "delete": frozenset({"deleted"}),
    "ping": frozenset({"pong"}),
    "edit": frozenset({"ack"}),
    "unsend": frozenset({"ack"}),
    "react": frozenset({"ack"}),
    "unreact": frozenset({"ack"}),
    "invite": frozenset({"invited"}),
    "dm": frozenset({"joined"}),
    "read": frozenset({"read"}),
    "auth": frozenset({"auth"}),
}

ENTRY_TYPES = frozenset({"message", "presence", "edit", "unsent", "reaction"})
"""Frames that are entries of a room's log (they carry its seq)."""

# A single history request never asks for more than this many entries.
_HISTORY_PAGE = 500


def build_url(url: str, user: str, token: str = "") -> str:
    """Add `?token=` (when a token is given) or `?user=` to a gateway URL.

    Args:
        url: The gateway endpoint, e.g. ``ws://127.0.0.1:8080/ws``.
        user: The user name, used when `token` is empty.
        token: A JWT; when non-empty it replaces `user`.

    Returns:
        The URL to open, with any existing `user`/`token` parameters replaced.
    """
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("user", "token")]
    query.append(("token", token) if token else ("user", user))
    return urlunsplit(parts._replace(query=urlencode(query)))


class EventStream:
    """An async iterator over the connection's events, optionally for one room.

    Ends (StopAsyncIteration) when the connection is closed for good.
    """

    def __init__(self, owner: Connection, room: str | None) -> None:
        self._owner = owner
        self.room = room
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue()

    def _offer(self, event: Event | None) -> None:
        room = getattr(event, "room", None)
        if event is None or self.room is None or room is None or room == self.room:
            self._queue.put_nowait(event)

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        event = await self._queue.get()
        if event is None:
            raise StopAsyncIteration
        return event

    async def get(self, within: float | None = None) -> Event | None:
        """The next event, or None at end of stream or after `within` seconds."""
        try:
            return await asyncio.wait_for(self._queue.get(), within)
        except TimeoutError:
            return None

    def close(self) -> None:
        """Stop receiving events."""
        self._owner._unlisten(self)


class Connection:
    """One logical session with a gateway that survives dropped sockets.

    Args:
        url: Gateway endpoint (``ws://host:8080/ws``); `user`/`token` are added.
        user: User name (sent as ``?user=`` when `token` is empty).
        token: JWT sent as ``?token=``; empty for the auth-off local default.
        token_source: where fresh tokens come from (a token file); the token
            in use is replaced before it expires, in-connection.
        reconnect: Reconnect automatically after the first successful connect.
        request_timeout: Seconds to wait for a reply (and for a reconnect).
        backoff_initial: First reconnect delay in seconds.
        backoff_max: Longest reconnect delay in seconds.
        open_timeout: Seconds allowed for one WebSocket handshake.
    """

    def __init__(
        self,
        url: str,
        user: str,
        token: str = "",
        *,
        token_source: TokenSource | None = None,
        reconnect: bool = True,
        request_timeout: float = 10.0,
        backoff_initial: float = 0.2,
        backoff_max: float = 8.0,
        open_timeout: float = 5.0,
    ) -> None:
        self.url = url
        self.user = user
        self._token_source = token_source
        self.token = token or (token_source() if token_source is not None else "")
        self.reconnect = reconnect
        self.token_refreshes = 0
        """How many fresh tokens the gateway took in-connection (for tests)."""
        self._refresher: asyncio.Task[None] | None = None
        self.request_timeout = request_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.open_timeout = open_timeout

        self.duplicates_dropped = 0
        """How many pushed entries were dropped as already delivered (for tests)."""
        self.gaps_filled = 0
        """How many entries were fetched from history to fill a gap (for tests)."""
        self.reconnects = 0
        """How many times the connection was re-established."""

        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._closing = False
        self._ended = asyncio.Event()
        """Set when no further reconnect will happen (closed, refused, or not reconnecting)."""
        self._pending: dict[str, tuple[asyncio.Future[dict[str, Any]], str, str | None]] = {}
        self._cursors: dict[str, RoomCursor] = {}
        self._joined: set[str] = set()
        self._resyncing: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._listeners: list[EventStream] = []
        self._id_prefix = secrets.token_hex(6)
        self._next_id = 0

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Connection:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        """True while a socket to the gateway is open."""
        return self._connected.is_set()

    @property
    def joined_rooms(self) -> frozenset[str]:
        """Rooms this connection joined and will resume after a reconnect."""
        return frozenset(self._joined)

    def last_seq(self, room: str) -> int | None:
        """Seq of the last entry of `room` delivered to the application."""
        cursor = self._cursors.get(room)
        return cursor.last if cursor else None

    async def connect(self) -> None:
        """Open the first connection.

        Raises:
            GatewayUnreachable: Nothing answered at the URL.
            Unauthorized: The gateway refused the user or token (HTTP 401).
        """
        ws = await self._open()
        self._attach(ws)
        self._supervisor = asyncio.create_task(self._supervise())

    async def close(self) -> None:
        """Close the connection for good and end every event stream."""
        self._closing = True
        if self._refresher is not None:
            self._refresher.cancel()
        if self._supervisor:
            self._supervisor.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(BaseException):
                await self._reader
        if self._supervisor:
            with contextlib.suppress(BaseException):
                await self._supervisor
        self._fail_pending(ConnectionLost("the connection was closed"))
        self._connected.clear()
        for stream in list(self._listeners):
            stream._offer(None)
        self._listeners.clear()

    async def wait_connected(self, within: float | None = None) -> bool:
        """Wait until a socket is open; False after `within` seconds or once it
        is clear none will open again (closed, or reconnecting gave up)."""
        if self._closing or self._ended.is_set():
            return self.connected and not self._closing
        waiters = [
            asyncio.ensure_future(self._connected.wait()),
            asyncio.ensure_future(self._ended.wait()),
        ]
        try:
            await asyncio.wait(waiters, timeout=within, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        return self.connected and not self._closing

    def events(self, room: str | None = None) -> EventStream:
        """Subscribe to events: every room's, or only `room`'s (plus global status)."""
        stream = EventStream(self, room)
        self._listeners.append(stream)
        return stream

    def _unlisten(self, stream: EventStream) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(stream)

    def _emit(self, event: Event) -> None:
        for stream in list(self._listeners):
            stream._offer(event)

    # ------------------------------------------------------------------ requests

    def _new_id(self) -> str:
        # Random prefix: `send` ids are de-duplicated per user by the server,
        # so two processes of the same user must never reuse one.
        self._next_id += 1
        return f"{self._id_prefix}-{self._next_id}"

    async def request(
        self, frame: dict[str, Any], *, within: float | None = None
    ) -> dict[str, Any]:
        """Send one request and wait for its reply.

        Waits for a reconnect (within the timeout) if the socket is down.

        Raises:
            ServerError: The gateway answered with an `error` frame.
            ConnectionLost: The socket dropped before the reply came.
            RequestTimeout: No reply within `within` s (default `request_timeout`).
        """
        timeout = self.request_timeout if within is None else within
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if not await self.wait_connected(timeout):
            raise ConnectionLost(
                "not connected to the gateway" + (" (closed)" if self._closing else "")
            )
        ws = self._ws
        assert ws is not None
        frame = dict(frame)
        frame.setdefault("id", self._new_id())
        req_id = str(frame["id"])
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._pending[req_id] = (future, str(frame["type"]), frame.get("room"))
        try:
            try:
                await ws.send(json.dumps(frame))
            except ConnectionClosed as exc:
                raise ConnectionLost() from exc
            remaining = max(0.0, deadline - loop.time())
            try:
                return await asyncio.wait_for(asyncio.shield(future), remaining)
            except TimeoutError:
                raise RequestTimeout(str(frame["type"]), timeout) from None
        finally:
            self._pending.pop(req_id, None)

    async def ping(self) -> None:
        """Round-trip a `ping`."""
        await self.request({"type": "ping"})

    async def rooms(self) -> list[dict[str, Any]]:
        """List rooms: dicts with room, owner, members, last_seq, administrator."""
        reply = await self.request({"type": "rooms"})
        return list(reply.get("rooms") or [])

    async def create(self, room: str) -> dict[str, Any]:
        """Create a room owned by this user; returns the `created` frame."""
        return await self.request({"type": "create", "room": room})

    async def join(self, room: str, since: int | None = None) -> dict[str, Any]:
        """Join (or re-subscribe to) `room` and start receiving its entries.

        Args:
            room: The room name.
            since: Deliver entries with seq > since; None asks for the last 50.
                If this connection already delivered entries of the room,
                it resumes after the last one instead so nothing repeats.

        Returns:
            The `joined` frame (room, last_seq, members).
        """
        cursor = self._cursors.setdefault(room, RoomCursor())
        if cursor.last is not None:
            since = cursor.last if since is None else max(since, cursor.last)
        elif since is not None:
            cursor.last = since
        frame: dict[str, Any] = {"type": "join", "room": room}
        if since is not None:
            frame["since"] = since
        self._joined.add(room)
        try:
            return await self.request(frame)
        except ServerError:
            self._joined.discard(room)
            raise

    async def send(
        self,
        room: str,
        text: str,
        *,
        msg_id: str | None = None,
        retry_for: float = 0.0,
    ) -> int:
        """Send a message; returns its seq once the gateway acknowledged it.

        Args:
            room: The room name.
            text: 1 to 4000 characters.
            msg_id: Idempotency key; generated when omitted.
            retry_for: Keep retrying (same id, so stored once) across
                reconnects and `unavailable` errors for this many seconds.

        Raises:
            ServerError: e.g. `not_member`, `rate_limited`, `too_large`.
        """
        msg_id = msg_id or self._new_id()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + retry_for
        delay = self.backoff_initial
        while True:
            try:
                reply = await self.request(
                    {"type": "send", "room": room, "text": text, "id": msg_id}
                )
                return int(reply["seq"])
            except (ConnectionLost, RequestTimeout, ServerError) as exc:
                retriable = not isinstance(exc, ServerError) or exc.code in (
                    "unavailable",
                    "rate_limited",
                )
                if not retriable or self._closing or loop.time() + delay >= deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff_max)

    async def history(
        self, room: str, before: int | None = None, limit: int | None = None
    ) -> list[Entry]:
        """Entries of `room` with seq < before (newest `limit`), oldest first."""
        frame: dict[str, Any] = {"type": "history", "room": room}
        if before is not None:
            frame["before"] = before
        if limit is not None:
            frame["limit"] = limit
        reply = await self.request(frame)
        out = [self._to_entry(room, m) for m in reply.get("messages") or []]
        return sorted((e for e in out if e is not None), key=lambda e: e.seq)

    async def members(self, room: str) -> list[dict[str, Any]]:
        """Members of `room` as dicts ``{"user": .., "online": bool}``."""
        reply = await self.request({"type": "members", "room": room})
        return [normalize_member(m) for m in reply.get("members") or []]

    async def annotate(
        self, kind: str, room: str, seq: int, *, text: str = "", emoji: str = ""
    ) -> int:
        """Edit (`text`), unsend, react or unreact (`emoji`) to the message at
        `seq`; returns the new entry's seq once acknowledged."""
        frame: dict[str, Any] = {"type": kind, "room": room, "seq": seq, "id": self._new_id()}
        if kind == "edit":
            frame["text"] = text
        elif kind in ("react", "unreact"):
            frame["emoji"] = emoji
        reply = await self.request(frame)
        return int(reply["seq"])

    async def dm(self, user: str) -> dict[str, Any]:
        """Open the direct-message room with `user` (created the first time);
        returns the `joined` frame, whose `room` names it."""
        # (followed before the reply, whose backlog comes right after it; a
        # token's user is known only from the reply)
        room = dm_room(self.user, user) if self.user else ""
        if room:
            self._joined.add(room)
        try:
            reply = await self.request({"type": "dm", "user": user})
        except ServerError:
            self._joined.discard(room)
            raise
        self._joined.add(str(reply["room"]))
        return reply

    async def invite(self, room: str, user: str) -> None:
        """Let `user` into `room` (a private one: members invite)."""
        await self.request({"type": "invite", "room": room, "user": user})

    async def typing(self, room: str) -> None:
        """Say this user is typing in `room` (no reply)."""
        if self._ws is not None and self.connected:
            with contextlib.suppress(ConnectionClosed):
                await self._ws.send(json.dumps({"type": "typing", "room": room}))

    async def mark_read(self, room: str, seq: int) -> int:
        """Move this user's read marker in `room` to `seq`; returns the marker."""
        reply = await self.request({"type": "read", "room": room, "seq": seq})
        return int(reply["seq"])

    async def leave(self, room: str) -> None:
        """Leave `room` (appends a `leave` entry) and stop resuming it."""
        await self.request({"type": "leave", "room": room})
        self._forget(room)

    async def delete(self, room: str) -> None:
        """Delete `room` (owner only); every member is told."""
        await self.request({"type": "delete", "room": room})
        self._forget(room)

    def forget(self, room: str) -> None:
        """Stop tracking `room` locally (no request is sent)."""
        self._forget(room)

    def _forget(self, room: str) -> None:
        self._joined.discard(room)
        self._cursors.pop(room, None)

    # ------------------------------------------------------------------ socket

    async def _open(self) -> ClientConnection:
        if self._token_source is not None:
            self.token = self._token_source() or self.token
        target = build_url(self.url, self.user, self.token)
        try:
            return await ws_connect(
                target,
                open_timeout=self.open_timeout,
                max_size=2**20,
                # A gateway that vanishes without closing is noticed by pings.
                ping_interval=15,
                ping_timeout=15,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in (401, 403):
                raise Unauthorized(self.url, status) from exc
            raise GatewayUnreachable(self.url, f"handshake answered HTTP {status}") from exc
        except InvalidURI as exc:
            raise GatewayUnreachable(self.url, "not a ws:// or wss:// URL") from exc
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            reason = str(exc) or type(exc).__name__
            raise GatewayUnreachable(self.url, reason) from exc

    def _attach(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._reader = asyncio.create_task(self._read(ws))
        self._connected.set()
        if self._token_source is not None and self._refresher is None:
            self._refresher = asyncio.create_task(self._keep_token_fresh())

    async def _keep_token_fresh(self) -> None:
        """Before the token in use expires, hand the gateway a fresher one."""
        while not self._closing:
            expires = expires_at(self.token)
            if expires is None:
                return  # a token that never expires needs no refresh
            await asyncio.sleep(refresh_delay(expires))
            assert self._token_source is not None
            fresh = self._token_source()
            fresh_expires = expires_at(fresh)
            if not fresh or fresh_expires is None or fresh_expires <= expires:
                # Nothing fresher yet: look again soon, and more often near the end.
                await asyncio.sleep(min(RETRY_SECONDS, max(0.2, (expires - time.time()) / 4)))
                continue
            try:
                await self.request({"type": "auth", "token": fresh})
            except ServerError as exc:
                self._emit(Status("error", f"the gateway refused the fresh token: {exc}"))
                await asyncio.sleep(RETRY_SECONDS)
                continue
            except ParleyError:
                # Not connected: a reconnect opens with the fresh token anyway.
                await asyncio.sleep(RETRY_SECONDS / 5)
                continue
            self.token = fresh
            self.token_refreshes += 1

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _fail_pending(self, exc: ParleyError) -> None:
        for future, _, _ in list(self._pending.values()):
            if not future.done():
                future.set_exception(exc)
                # Mark it retrieved: a request that failed while sending never
                # awaits its future, and asyncio would log the error as lost.
                future.exception()
        # The waiters pop their own entries; a failed future is never re-used.

    async def _read(self, ws: ClientConnection) -> None:
        """Read frames until the socket closes, then fail waiting requests."""
        try:
            async for raw in ws:
                try:
                    frame = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(frame, dict):
                    self._dispatch(frame)
        except ConnectionClosed:
            pass
        finally:
            self._connected.clear()
            self._fail_pending(ConnectionLost())

    async def _supervise(self) -> None:
        """Reconnect whenever the socket drops, then resume every joined room."""
        while True:
            assert self._reader is not None
            await self._reader
            if self._closing:
                return
            if not self.reconnect:
                self._ended.set()
                self._emit(Status("closed", "disconnected from the gateway"))
                return
            self._emit(Status("reconnecting", "connection lost; reconnecting…"))
            ws = await self._reconnect_loop()
            if ws is None:
                self._ended.set()
                return
            self.reconnects += 1
            self._attach(ws)
            self._emit(Status("connected", "reconnected to the gateway"))
            await self._resume()

    async def _reconnect_loop(self) -> ClientConnection | None:
        delay = self.backoff_initial
        attempt = 0
        while not self._closing:
            # Jitter spreads a thundering herd of clients after a gateway restart.
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            attempt += 1
            try:
                return await self._open()
            except Unauthorized as exc:
                self._emit(Status("closed", str(exc), reason="unauthorized"))
                return None
            except GatewayUnreachable:
                if attempt in (3, 10) or attempt % 30 == 0:
                    self._emit(Status("reconnecting", f"still reconnecting (attempt {attempt})…"))
                delay = min(delay * 2, self.backoff_max)
        return None

    async def _resume(self) -> None:
        """Re-join every joined room after the last seq delivered.

        A room the gateway cannot serve yet (`unavailable` right after a
        restart, a timeout while its administrator is being elected) is
        retried with backoff: giving up would leave it silently stale.
        """
        pending = sorted(self._joined)
        delay = self.backoff_initial
        warned: set[str] = set()
        while pending and not self._closing:
            retry: list[str] = []
            for room in pending:
                if room not in self._joined:
                    continue  # left or deleted meanwhile
                if not self.connected:
                    return  # the supervisor reconnects and resumes again
                outcome = await self._resume_room(room, warn=room not in warned)
                if outcome == "lost":
                    return
                if outcome == "retry":
                    warned.add(room)
                    retry.append(room)
            pending = retry
            if pending:
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, self.backoff_max)

    async def _resume_room(self, room: str, warn: bool) -> str:
        """One re-join attempt: "ok", "gone", "failed", "retry" or "lost"."""
        last = self.last_seq(room)
        frame: dict[str, Any] = {"type": "join", "room": room}
        if last is not None:
            frame["since"] = last
        try:
            await self.request(frame)
        except ServerError as exc:
            if exc.code == "not_found":
                self._forget(room)
                self._emit(Deleted(room))
                return "gone"
            if exc.code in ("unavailable", "internal", "rate_limited"):
                if warn:
                    self._emit(Status("error", f"{room}: {exc}; retrying", room))
                return "retry"
            self._emit(Status("error", f"could not resume {room}: {exc}", room))
            return "failed"
        except RequestTimeout:
            return "retry" if self.connected else "lost"
        except ConnectionLost:
            return "lost"
        self._emit(Status("resumed", f"resumed after #{last}", room))
        return "ok"

    # ------------------------------------------------------------------ inbound

    def _dispatch(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if self._resolve(frame) and kind != "deleted":
            return
        if kind in ENTRY_TYPES and isinstance(frame.get("seq"), int):
            self._on_entry(frame)
        elif kind in ("typing", "mention", "invitation", "read"):
            self._emit(Notice(str(kind), str(frame.get("room", "")), frame))
        elif kind == "presence":
            if frame.get("event") in ("online", "offline"):
                self._emit(
                    Online(
                        str(frame.get("room", "")),
                        str(frame.get("user", "")),
                        frame.get("event") == "online",
                    )
                )
        elif kind == "deleted":
            room = str(frame.get("room", ""))
            self._resolve_by_type("deleted", room)
            self._forget(room)
            self._emit(Deleted(room))
        elif kind == "error":
            error = ServerError(str(frame.get("code", "error")), str(frame.get("message", "")))
            self._emit(Status("error", str(error), frame.get("room")))

    def _resolve(self, frame: dict[str, Any]) -> bool:
        """Complete the request this frame answers; False if it answers none."""
        req_id = frame.get("id")
        entry = self._pending.get(str(req_id)) if req_id is not None else None
        if entry is None and frame.get("type") not in ("error", "deleted", None):
            # No usable id: take the oldest request expecting this reply type.
            # Pushed entries never reach here: their types are not reply types.
            for candidate in self._pending.values():
                expected = _REPLY_TYPES.get(candidate[1], frozenset())
                if frame["type"] in expected and candidate[2] in (None, frame.get("room")):
                    entry = candidate
                    break
        if entry is None:
            return False
        future, _, room = entry
        if future.done():
            return True
        if frame.get("type") == "error":
            future.set_exception(
                ServerError(str(frame.get("code", "error")), str(frame.get("message", "")), room)
            )
        else:
            future.set_result(frame)
        return True

    def _resolve_by_type(self, reply_type: str, room: str) -> None:
        for future, req_type, req_room in self._pending.values():
            if (
                reply_type in _REPLY_TYPES.get(req_type, frozenset())
                and req_room == room
                and not future.done()
            ):
                future.set_result({"type": reply_type, "room": room})

    def _to_entry(self, room: str, frame: Any) -> Entry | None:
        if not isinstance(frame, dict) or not isinstance(frame.get("seq"), int):
            return None
        frame = dict(frame)
        frame.setdefault("room", room)
        if "type" not in frame:
            frame["type"] = "message" if "text" in frame else "presence"
        if frame["type"] == "presence" and "user" not in frame and "from" in frame:
            frame["user"] = frame["from"]
        return Entry(room, frame["seq"], frame)

    def _on_entry(self, frame: dict[str, Any]) -> None:
        room = str(frame.get("room", ""))
        entry = self._to_entry(room, frame)
        if entry is None:
            return
        if room not in self._joined:
            # A room this connection stopped following (a closed tab) is still
            # subscribed at the gateway; its entries are not wanted any more.
            return
        cursor = self._cursors.setdefault(room, RoomCursor())
        verdict = cursor.classify(entry.seq)
        if verdict is Verdict.DUPLICATE:
            self.duplicates_dropped += 1
            return
        if room in self._resyncing or verdict is Verdict.GAP:
            cursor.hold(entry.seq, entry.frame)
            if room not in self._resyncing:
                self._resyncing.add(room)
                self._spawn(self._resync(room))
            return
        cursor.advance(entry.seq)
        self._emit(entry)
        self._release(room, cursor)

    def _release(self, room: str, cursor: RoomCursor) -> None:
        for held in cursor.release():
            self._emit(Entry(room, int(held["seq"]), held))  # type: ignore[call-overload]

    async def _resync(self, room: str) -> None:
        """Fill a gap from `history` before delivering what came after it."""
        try:
            while (cursor := self._cursors.get(room)) is not None and (hole := cursor.missing()):
                low, high = hole
                before_last = cursor.last
                try:
                    entries = await self.history(
                        room, before=high + 1, limit=min(high - low + 1, _HISTORY_PAGE)
                    )
                except ParleyError:
                    # Connection trouble: the resume after reconnect re-joins
                    # since the last delivered seq, which fills the hole too.
                    return
                for entry in entries:
                    if cursor.classify(entry.seq) is Verdict.DELIVER and entry.seq < high + 1:
                        cursor.advance(entry.seq)
                        self.gaps_filled += 1
                        self._emit(entry)
                if cursor.last == before_last:
                    # History could not supply the hole: say so instead of hiding it.
                    skipped_to = cursor.skip_to_held()
                    self._emit(
                        Status(
                            "gap",
                            f"entries #{low}-#{(skipped_to or high + 1) - 1} of {room} "
                            "could not be loaded",
                            room,
                        )
                    )
                self._release(room, cursor)
        finally:
            self._resyncing.discard(room)
            cursor = self._cursors.get(room)
            if cursor is not None:
                self._release(room, cursor)


def normalize_member(member: Any) -> dict[str, Any]:
    """Members arrive as names or as ``{"user", "online"}``; return the latter."""
    if isinstance(member, dict):
        return {"user": str(member.get("user", "?")), "online": bool(member.get("online"))}
    return {"user": str(member), "online": False}
