"""A small WebSocket chat client for tests, speaking the DESIGN §5 protocol.

One reader task receives every frame and files it:

* a reply whose `id` matches a pending `request()` resolves that request;
* every other frame goes to the inbox, where `next_of(type)` finds it;
* entries with a `seq` (messages, join/leave presence) are also recorded per
  room in `deliveries`, in arrival order, never de-duplicated, so tests can
  check the ordering invariants on exactly what the client saw.

    async with await ChatClient.connect(cluster.gateway_url(), "alice") as alice:
        assert (await alice.create("general"))["type"] == "created"
        await alice.join("general")
        ack = await alice.send("general", "hi")
        msg = await alice.next_of("message", room="general")
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

Frame = dict[str, Any]

DEFAULT_TIMEOUT = 10.0
"""Seconds a request or next_of waits unless told otherwise."""


def with_query(url: str, user: str | None = None, token: str | None = None) -> str:
    """`url` with ?user=NAME and/or ?token=JWT appended."""
    params = []
    if user is not None:
        params.append(f"user={quote(user)}")
    if token is not None:
        params.append(f"token={quote(token)}")
    if not params:
        return url
    return url + ("&" if "?" in url else "?") + "&".join(params)


class ChatClient:
    """One WebSocket connection to a gateway; see the module docstring."""

    _ids = itertools.count(1)

    def __init__(self, ws: ClientConnection, user: str | None) -> None:
        """Wrap an open connection; use ChatClient.connect() instead."""
        self.ws = ws
        self.user = user
        self.frames: list[Frame] = []
        """Every frame received, in order."""
        self.deliveries: dict[str, list[Frame]] = {}
        """Per room, every received entry that has a seq, in arrival order."""
        self._inbox: list[Frame] = []
        self._pending: dict[str, asyncio.Future[Frame]] = {}
        self._changed = asyncio.Condition()
        self.closed = asyncio.Event()
        """Set when the connection has closed (see close_code)."""
        self.close_code: int | None = None
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(
        cls,
        url: str,
        user: str | None = None,
        token: str | None = None,
        *,
        open_timeout: float = DEFAULT_TIMEOUT,
        **kwargs: Any,
    ) -> ChatClient:
        """Connect to `url` (a gateway's ws://host:port/ws) as `user` or with `token`.

        Extra keyword arguments go to websockets' connect().

        Raises:
            websockets.exceptions.InvalidStatus: when the handshake is refused (e.g. 401).
        """
        ws = await connect(with_query(url, user, token), open_timeout=open_timeout, **kwargs)
        return cls(ws, user)

    async def __aenter__(self) -> ChatClient:
        """Use as `async with await ChatClient.connect(...) as c:`."""
        return self

    async def __aexit__(self, *_exc: Any) -> None:
        """Close the connection."""
        await self.close()

    async def close(self) -> None:
        """Close the connection and stop the reader."""
        await self.ws.close()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader

    async def _read(self) -> None:
        """Receive frames until the connection closes, filing each one."""
        try:
            async for raw in self.ws:
                frame: Frame = json.loads(raw)
                self.frames.append(frame)
                room = frame.get("room")
                if isinstance(room, str) and "seq" in frame and frame.get("type") != "ack":
                    self.deliveries.setdefault(room, []).append(frame)
                future = self._pending.pop(str(frame.get("id")), None) if "id" in frame else None
                if future is not None and not future.done():
                    future.set_result(frame)
                else:
                    self._inbox.append(frame)
                async with self._changed:
                    self._changed.notify_all()
        except ConnectionClosed:
            pass
        finally:
            self.close_code = self.ws.close_code
            self.closed.set()
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionError(f"closed ({self.close_code})"))
            async with self._changed:
                self._changed.notify_all()

    async def send_frame(self, frame: Frame | str) -> None:
        """Send one frame as is (a dict is JSON-encoded; a str is sent raw)."""
        await self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))

    async def request(self, frame: Frame, timeout: float = DEFAULT_TIMEOUT) -> Frame:
        """Send `frame` and return the reply carrying its id (one is added if missing).

        The reply may be an `error` frame; this does not raise for those.

        Raises:
            TimeoutError: no reply in time.
            ConnectionError: the connection closed first.
        """
        frame = dict(frame)
        frame.setdefault("id", f"r{next(self._ids)}")
        future: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._pending[str(frame["id"])] = future
        try:
            await self.send_frame(frame)
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            raise TimeoutError(f"no reply to {frame!r} in {timeout:g} s") from None
        finally:
            self._pending.pop(str(frame["id"]), None)

    async def next_of(
        self,
        type_: str,
        timeout: float = DEFAULT_TIMEOUT,
        room: str | None = None,
        where: Callable[[Frame], bool] | None = None,
    ) -> Frame:
        """Take the oldest unclaimed frame of `type_` (and `room`, and `where`) from the inbox.

        Frames claimed by request() are not in the inbox. Waits for one to arrive.

        Raises:
            TimeoutError: none in time.
            ConnectionError: the connection closed and none is left.
        """

        def match(frame: Frame) -> bool:
            return (
                frame.get("type") == type_
                and (room is None or frame.get("room") == room)
                and (where is None or where(frame))
            )

        try:
            async with asyncio.timeout(timeout):
                async with self._changed:
                    while True:
                        for i, frame in enumerate(self._inbox):
                            if match(frame):
                                return self._inbox.pop(i)
                        if self.closed.is_set():
                            raise ConnectionError(f"closed ({self.close_code}) before a {type_!r}")
                        await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(f"no {type_!r} frame (room={room}) in {timeout:g} s") from None

    def messages(self, room: str) -> list[Frame]:
        """The `message` entries received for `room`, in arrival order."""
        return [f for f in self.deliveries.get(room, []) if f.get("type") == "message"]

    async def wait_deliveries(
        self,
        room: str,
        count: int,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> list[Frame]:
        """Wait until at least `count` entries with a seq arrived for `room`; return them all.

        Raises:
            TimeoutError: fewer arrived in time.
        """
        try:
            async with asyncio.timeout(timeout):
                async with self._changed:
                    await self._changed.wait_for(
                        lambda: len(self.deliveries.get(room, [])) >= count or self.closed.is_set()
                    )
        except TimeoutError:
            have = len(self.deliveries.get(room, []))
            raise TimeoutError(f"{have}/{count} entries for {room!r} in {timeout:g} s") from None
        return list(self.deliveries.get(room, []))

    # -- the protocol's requests -------------------------------------------------

    async def ping(self) -> Frame:
        """{"type":"ping"} -> pong."""
        return await self.request({"type": "ping"})

    async def rooms(self) -> Frame:
        """{"type":"rooms"} -> rooms."""
        return await self.request({"type": "rooms"})

    async def create(self, room: str) -> Frame:
        """Create `room` -> created (or error room_exists)."""
        return await self.request({"type": "create", "room": room})

    async def join(self, room: str, since: int | None = None) -> Frame:
        """Join `room` -> joined; entries then arrive in `deliveries`."""
        frame: Frame = {"type": "join", "room": room}
        if since is not None:
            frame["since"] = since
        return await self.request(frame)

    async def send(self, room: str, text: str, msg_id: str | None = None) -> Frame:
        """Send `text` to `room` -> ack with its seq (the same msg_id gets the same seq)."""
        frame: Frame = {"type": "send", "room": room, "text": text}
        if msg_id is not None:
            frame["id"] = msg_id
        return await self.request(frame)

    async def history(
        self, room: str, before: int | None = None, limit: int | None = None
    ) -> Frame:
        """history of `room` -> history."""
        frame: Frame = {"type": "history", "room": room}
        if before is not None:
            frame["before"] = before
        if limit is not None:
            frame["limit"] = limit
        return await self.request(frame)

    async def members(self, room: str) -> Frame:
        """members of `room` -> members."""
        return await self.request({"type": "members", "room": room})

    async def leave(self, room: str) -> Frame:
        """Leave `room` -> left."""
        return await self.request({"type": "leave", "room": room})

    async def delete(self, room: str) -> Frame:
        """Delete `room` (owner only) -> deleted (or error)."""
        return await self.request({"type": "delete", "room": room})
