"""One client connection: a reader that handles frames and a writer that drains a queue.

Everything sent to the client goes through one bounded queue drained by the
writer task, so a fan-out never waits on a slow socket: when the queue is
full the client is too slow and is disconnected with 1013.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.protocol import State

from parley.gateway.auth import AuthFailed, Identity
from parley.gateway.ratelimit import TokenBucket
from parley.gateway.wire import text_frame
from parley.observability.log import get_logger
from parley.observability.metrics import AUTH_FAILURES, WS_DISCONNECTS, WS_FRAMES
from parley.protocol import (
    AuthRequest,
    FrameLimits,
    PingRequest,
    ProtocolError,
    SendRequest,
    frames,
    parse_request,
)
from parley.protocol.errors import ErrorCode

if TYPE_CHECKING:
    from parley.protocol import Request

log = get_logger(__name__)

FRAMES_IN = WS_FRAMES.labels(direction="in")
FRAMES_OUT = WS_FRAMES.labels(direction="out")
"""Frames handed to sockets; the fan-out counts once per entry, not per socket."""
DIRECT_WRITE_LIMIT = 32 * 1024
"""Bytes a socket's transport may buffer and still be written to directly.

Below it (the usual case) frames go straight into the transport, already
framed (see wire.py), with no task switch; above it, they wait in the bounded
queue and the writer task waits for the socket to drain.
"""
MAX_CORKED = 64
"""Writes gathered in one turn of the loop before they go out anyway (so
the buffer check sees them)."""
ABUSE_FACTOR = 3
"""Frames dropped by the rate limit, in bursts, before the connection is closed."""
CLOSE_GRACE = 2.0
"""Seconds a client we disconnect gets to take the close frame before the TCP abort."""
MAX_INFLIGHT_SENDS = 256
"""Sends of one connection awaiting their ack; the reader waits beyond that."""

TOKEN_EXPIRED = 4001
"""Close code of a connection whose token expired without a refresh."""

Handle = Callable[["Session", "Request"], Awaitable[None]]
"""Handles one parsed request for a session (see handlers.py)."""
StartSend = Callable[["Session", SendRequest], "asyncio.Future[None]"]
"""Begins a send; the future is done once the client is answered (handlers.py)."""
Verify = Callable[[str], Identity]
"""Checks a fresh token (auth.Verifier.verify); None when auth is off."""


def _request_id(data: str | bytes) -> str | None:
    """The id of a frame we are not going to handle, for its error reply."""
    try:
        frame = json.loads(data)
    except (ValueError, RecursionError, TypeError):
        return None
    rid = frame.get("id") if isinstance(frame, dict) else None
    return rid if isinstance(rid, str) and len(rid) <= 128 else None


class Session:
    """The state of one connection; kept small, there may be tens of thousands."""

    __slots__ = (
        "_bucket",
        "_close_task",
        "_conn",
        "_corked",
        "_dropped",
        "_expires",
        "_expiry",
        "_handle",
        "_idle",
        "_limits",
        "_max_dropped",
        "_queue",
        "_queue_size",
        "_reason",
        "_sends",
        "_start",
        "_transport",
        "_user_bucket",
        "_verify",
        "_writer",
        "closed",
        "deleting",
        "rooms",
        "user",
    )

    def __init__(
        self,
        conn: ServerConnection,
        identity: Identity,
        handle: Handle,
        *,
        queue_size: int,
        rate: float,
        burst: int,
        user_bucket: TokenBucket | None = None,
        verify: Verify | None = None,
        limits: FrameLimits | None = None,
        start_send: StartSend | None = None,
    ) -> None:
        """Prepare a session; run() serves it.

        Args:
            conn: the WebSocket connection.
            identity: the authenticated user, and when their token expires.
            handle: the request handler.
            queue_size: outbound frames buffered before the client counts as too slow.
            rate: frames per second allowed on average.
            burst: frames allowed in a burst.
            user_bucket: the user's budget shared by all their connections.
            verify: checks a refreshed token (None: auth is off).
            limits: JSON nesting and number limits of client frames.
            start_send: begins a send without a task of its own (default:
                `handle` in a task).
        """
        self.user = identity.user
        self._expires = identity.expires
        self._expiry: asyncio.TimerHandle | None = None
        self._user_bucket = user_bucket
        self._verify = verify
        self._limits = limits or FrameLimits()
        self.closed = False
        self.rooms: set[str] = set()
        """Rooms this connection is attached to (joined on this connection)."""
        self.deleting: dict[str, str | None] = {}
        """Rooms this connection asked to delete, and the request's id to echo."""
        self._conn = conn
        self._handle = handle
        # The queue and its writer task are made when first needed: most
        # sockets keep up and never use them, and idle connections stay small.
        self._queue: asyncio.Queue[bytes] | None = None
        self._queue_size = queue_size
        self._writer: asyncio.Task[None] | None = None
        self._idle = True
        """True while nothing is queued or being written: direct writes keep the order."""
        self._corked: list[bytes] | None = None
        """Frames written in this turn of the loop, written out together at its end."""
        self._transport = conn.transport
        self._bucket = TokenBucket(rate, burst, asyncio.get_running_loop().time())
        self._dropped = 0
        self._max_dropped = ABUSE_FACTOR * max(burst, 1)
        self._sends: set[asyncio.Future[None]] = set()
        self._start = start_send
        self._close_task: asyncio.Task[None] | None = None
        self._reason: str | None = None

    def send_frames(self, payloads: list[bytes], wire: bytes) -> None:
        """Send frames without blocking; a full queue disconnects the client (1013).

        Args:
            payloads: the frames' JSON texts, UTF-8 encoded, in order.
            wire: the same frames as WebSocket bytes (wire.text_frame of each,
                concatenated), shared by every socket they go to.

        When nothing is waiting before them and the socket keeps up, the
        frames are written at once in one write; otherwise they are queued
        for the writer task.
        """
        self._send(payloads, wire, cork=False)

    def _send(self, payloads: list[bytes], wire: bytes, cork: bool) -> None:
        """send_frames; with `cork`, a direct write waits for the end of this
        turn of the event loop, to go out with every other frame corked
        meanwhile (one write call, not one per ack: a pipelining client's
        acks come a batch at a time). The fan-out does not cork: its batch
        is one write per socket already, and a thousand sockets would each
        wait for a callback."""
        if self.closed:
            return
        transport = self._transport
        if (
            self._idle
            and transport.get_write_buffer_size() < DIRECT_WRITE_LIMIT
            and self._conn.protocol.state is State.OPEN
        ):
            # Safe beside websockets' own writes: we never fragment messages
            # and compression is off, so a frame is complete in itself.
            if not cork:
                if self._corked is not None:
                    self._flush()
                transport.write(wire)
            elif self._corked is None:
                self._corked = [wire]
                asyncio.get_running_loop().call_soon(self._flush)
            else:
                self._corked.append(wire)
                if len(self._corked) >= MAX_CORKED:
                    self._flush()  # (the buffer check above sees it again)
            return
        self._flush()  # what is corked goes before what is queued
        self._idle = False
        if self._queue is None:
            self._queue = asyncio.Queue(self._queue_size)
            self._writer = asyncio.get_running_loop().create_task(self._write(self._queue))
        for payload in payloads:
            try:
                self._queue.put_nowait(payload)
            except asyncio.QueueFull:
                self.close(CloseCode.TRY_AGAIN_LATER, "slow consumer", "slow_consumer")
                return

    def _flush(self) -> None:
        corked, self._corked = self._corked, None
        # (a close frame websockets wrote meanwhile ends what may be sent)
        if corked and self._conn.protocol.state is State.OPEN:
            self._transport.write(corked[0] if len(corked) == 1 else b"".join(corked))

    def reply(self, text: str) -> None:
        """Send one frame made for this connection only."""
        FRAMES_OUT.inc()
        payload = text.encode()
        self._send([payload], text_frame(payload), cork=True)

    def room_deleted(self, room: str) -> None:
        """The fan-out saw the room deleted: tell the client, forget the room.

        When this connection asked for the deletion, this is also the reply,
        so it carries the request's id.
        """
        self.rooms.discard(room)
        self.reply(frames.deleted(room, self.deleting.pop(room, None)))

    def close(self, code: int, reason: str, metric_reason: str) -> None:
        """Close the connection in the background; nothing more is delivered."""
        if self._close_task is not None:
            return
        self.closed = True
        self._reason = metric_reason
        self._close_task = asyncio.get_running_loop().create_task(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        """Close, but abort the TCP connection if the close frame cannot get out.

        websockets' close() first waits for the socket to drain, without a
        deadline, and the clients we close are mostly those that do not read.
        """
        try:
            async with asyncio.timeout(CLOSE_GRACE):
                await self._conn.close(code, reason)
        except TimeoutError:
            self._transport.abort()

    async def run(self) -> None:
        """Serve the connection until it closes, then count the disconnect by reason."""
        self._arm_expiry()
        try:
            await self._read()
        except ConnectionClosed:
            pass
        finally:
            self.closed = True
            if self._expiry is not None:
                self._expiry.cancel()
            tasks = list(self._sends)
            if self._writer is not None:
                tasks.append(self._writer)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._close_task is not None:
                await asyncio.gather(self._close_task, return_exceptions=True)
            WS_DISCONNECTS.labels(reason=self._disconnect_reason()).inc()

    def _arm_expiry(self) -> None:
        """Close the connection when its token expires (unless refreshed first)."""
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        if self._expires is None:
            return
        loop = asyncio.get_running_loop()
        self._expiry = loop.call_later(max(0.0, self._expires - time.time()), self._expired)

    def _expired(self) -> None:
        self.reply(frames.error(ErrorCode.UNAUTHORIZED, "token expired"))
        self.close(TOKEN_EXPIRED, "token expired", "token_expired")

    def _refresh(self, request: AuthRequest) -> None:
        """Take a fresh token for the same user; a bad one changes nothing."""
        if self._verify is None:
            raise ProtocolError(ErrorCode.BAD_REQUEST, "auth is off on this gateway", request.id)
        try:
            identity = self._verify(request.token)
            if identity.user != self.user:
                raise AuthFailed(
                    "other_user", f"token for {identity.user} on {self.user}'s connection"
                )
        except AuthFailed as failed:
            AUTH_FAILURES.labels(reason=failed.reason).inc()
            log.info(
                "token refresh refused", user=self.user, reason=failed.reason, detail=failed.detail
            )
            raise ProtocolError(ErrorCode.UNAUTHORIZED, "invalid token", request.id) from None
        self._expires = identity.expires
        self._arm_expiry()
        self.reply(frames.authenticated(self.user, identity.expires, request.id))

    def _disconnect_reason(self) -> str:
        if self._reason is not None:
            return self._reason
        code = self._conn.close_code
        if code == CloseCode.MESSAGE_TOO_BIG:
            return "too_large"
        if code == CloseCode.INTERNAL_ERROR and self._conn.close_reason == "keepalive ping timeout":
            return "keepalive_timeout"
        if code in (CloseCode.NORMAL_CLOSURE, CloseCode.GOING_AWAY):
            return "normal"
        return "error"

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        bucket = self._bucket
        user_bucket = self._user_bucket
        limits = self._limits
        async for data in self._conn:
            FRAMES_IN.inc()
            if self.closed:
                return
            now = loop.time()
            if not bucket.take(now) or (user_bucket is not None and not user_bucket.take(now)):
                self._over_limit(data)
                continue
            if bucket.full:
                self._dropped = 0  # the client calmed down; forgive earlier drops
            try:
                request = parse_request(data, limits)
            except ProtocolError as error:
                self.reply(frames.error(error.code, error.message, error.id))
                continue
            if isinstance(request, SendRequest):
                await self._start_send(request)
                continue
            if isinstance(request, PingRequest):
                # Liveness must not wait behind sends stuck in a failover.
                self.reply(frames.pong(request.id))
                continue
            if isinstance(request, AuthRequest):
                try:
                    self._refresh(request)
                except ProtocolError as error:
                    self.reply(frames.error(error.code, error.message, error.id))
                continue
            if self._sends:
                # Keep this connection's requests in order: a leave must not
                # overtake the sends before it.
                await asyncio.gather(*self._sends, return_exceptions=True)
            await self._serve(request)

    def _over_limit(self, data: str | bytes) -> None:
        self._dropped += 1
        if self._dropped > self._max_dropped:
            self.close(CloseCode.POLICY_VIOLATION, "rate limit exceeded", "rate_limited")
            return
        self.reply(frames.error(ErrorCode.RATE_LIMITED, "too many frames; slow down",
                                _request_id(data)))  # fmt: skip

    async def _start_send(self, request: SendRequest) -> None:
        """Start a send and go on reading, so a client can pipeline sends."""
        if len(self._sends) >= MAX_INFLIGHT_SENDS:
            await asyncio.wait(self._sends, return_when=asyncio.FIRST_COMPLETED)
        if self._start is not None:
            pending = self._start(self, request)
        else:
            pending = asyncio.get_running_loop().create_task(self._serve(request))
        self._sends.add(pending)
        pending.add_done_callback(self._sends.discard)

    async def _serve(self, request: Request) -> None:
        await self.guard(request, self._handle(self, request))

    async def guard(self, request: Request, work: Awaitable[None]) -> None:
        """The per-request error boundary: every failure of `work` (serving
        `request`) becomes an error frame."""
        try:
            await work
        except ProtocolError as error:
            self.reply(frames.error(error.code, error.message, request.id))
        except Exception:
            log.exception("request failed", user=self.user, request=type(request).__name__)
            self.reply(frames.error(ErrorCode.INTERNAL, "internal error", request.id))

    async def _write(self, queue: asyncio.Queue[bytes]) -> None:
        """Drain the outbound queue into the socket, in order, waiting for it to drain."""
        send = self._conn.send
        try:
            while True:
                data = await queue.get()
                await send(data, text=True)
                while not queue.empty():
                    await send(queue.get_nowait(), text=True)
                self._idle = True
        except ConnectionClosed:
            return
        except Exception:
            log.exception("writer failed", user=self.user)
            self.close(CloseCode.INTERNAL_ERROR, "internal error", "internal")
