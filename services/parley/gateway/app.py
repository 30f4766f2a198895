"""The WebSocket server of a gateway, wired to its routing and fan-out.

Discovery, channels and health come from outside (server.py builds the real
ones), so tests can run a gateway against in-process nodes.
"""

from __future__ import annotations

import asyncio
import os
import socket
import weakref

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.frames import CloseCode
from websockets.http11 import Request, Response

from parley.cluster.channels import ChannelPool
from parley.cluster.discovery import Discovery
from parley.cluster.health import HealthMonitor
from parley.config import GatewayConfig
from parley.gateway.auth import (
    WS_PATH,
    AuthFailed,
    HandshakeRefused,
    Identity,
    Verifier,
    authenticate,
)
from parley.gateway.fanout import Fanout
from parley.gateway.handlers import Handlers
from parley.gateway.joiner import Joiner
from parley.gateway.latency import DeliveryClock
from parley.gateway.notices import NoticeWatcher, UserSessions
from parley.gateway.presence import PresenceReporter
from parley.gateway.publisher import Publisher
from parley.gateway.router import Router
from parley.gateway.session import CLOSE_GRACE, Session
from parley.gateway.web import WebClient
from parley.observability.log import get_logger
from parley.observability.metrics import AUTH_FAILURES, WS_CONNECTIONS, WS_DISCONNECTS
from parley.protocol import FrameLimits

log = get_logger(__name__)

TOO_MANY_CONNECTIONS = 4008
"""Close code of a connection over max_connections_per_user."""


def make_verifier(cfg: GatewayConfig) -> Verifier | None:
    """The token checker cfg asks for; None with auth explicitly off.

    Raises:
        ValueError: auth is on with neither a secret nor a JWKS file, or the
            JWKS file is unreadable.
    """
    if cfg.auth == "off":
        return None
    if not cfg.jwt_secret and not cfg.jwt_secret_file and not cfg.jwt_jwks:
        raise ValueError(
            "auth is on: set --jwt-secret, --jwt-secret-file or --jwt-jwks"
            " (or --auth off for development)"
        )
    return Verifier(
        secret=cfg.jwt_secret,
        secret_file=cfg.jwt_secret_file,
        jwks=cfg.jwt_jwks,
        issuer=cfg.jwt_issuer,
        audience=cfg.jwt_audience,
        leeway=cfg.jwt_leeway,
    )


def split_address(address: str) -> tuple[str, int]:
    """ "host:port" (or "[v6]:port") as (host, port)."""
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def _listen(address: str) -> socket.socket:
    """A listening socket, bound before serving so the port is known up front."""
    host, port = split_address(address)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must say TCP: asyncio turns Nagle off (TCP_NODELAY) only on such
    # sockets, and with Nagle on, an ack written just after a delivery waits
    # for the client's delayed ACK: measured +40 ms on every acknowledgement.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    return sock


class Gateway:
    """One gateway: WebSocket sessions over a router, publisher and fan-out."""

    def __init__(
        self,
        cfg: GatewayConfig,
        discovery: Discovery,
        pool: ChannelPool,
        health: HealthMonitor,
    ) -> None:
        """Wire the gateway; start() begins serving.

        Args:
            cfg: the gateway's configuration (cfg.ws is where it listens).
            discovery: the node set, already started.
            pool: channels to the nodes.
            health: which nodes are up, already started.
        """
        self._cfg = cfg
        self._verifier = make_verifier(cfg)
        # Who each handshake proved to be, until its connection starts: one
        # signature check per connection. Weak: a handshake that fails after
        # the check (a bad Sec-WebSocket-Key) leaves nothing behind.
        self._identities: weakref.WeakKeyDictionary[ServerConnection, Identity] = (
            weakref.WeakKeyDictionary()
        )
        self._limits = FrameLimits(cfg.max_json_depth, cfg.max_number_chars)
        self._discovery = discovery
        self._health = health
        self._router = Router(discovery, pool, health, cfg.replicas)
        self._publisher = Publisher(self._router)
        self._joiner = Joiner(self._router)
        self._presence = PresenceReporter(self._router, cfg.id)
        self._clock = DeliveryClock()
        self._fanout = Fanout(self._router, self._presence, self._clock)
        # A per-user budget below one connection's would make the latter moot.
        self._sessions = UserSessions(
            rate=max(cfg.user_rate_limit, cfg.rate_limit),
            burst=max(cfg.user_rate_burst, cfg.rate_burst),
        )
        self._notices = NoticeWatcher(discovery, self._router, self._sessions)
        self._handlers = Handlers(
            discovery, health, self._router, self._publisher, self._joiner, self._fanout,
            self._clock, self._sessions, max_rooms=cfg.max_rooms_per_connection,
        )  # fmt: skip
        origins = [o.strip() for o in cfg.allowed_origins.split(",") if o.strip()]
        self._web = WebClient(auth=self._verifier is not None, allowed_origins=origins)
        self._server: Server | None = None
        self._stopping = False
        self.host = ""
        self.port = 0
        self.id = cfg.id

    @property
    def url(self) -> str:
        """The WebSocket URL clients connect to."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}{WS_PATH}"

    async def start(self) -> None:
        """Listen on cfg.ws and serve clients."""
        sock = _listen(self._cfg.ws)
        self.host, self.port = sock.getsockname()[:2]
        self.id = self._cfg.id or f"{self.host}:{self.port}-{os.getpid()}"
        self._presence.gateway_id = self.id
        self._sessions.gateway_id = self.id
        self._notices.start()
        self._server = await serve(
            self._connection,
            sock=sock,
            process_request=self._handshake,
            max_size=self._cfg.max_frame_bytes,
            # Compression would deflate every fanned-out frame once per socket.
            compression=None,
            close_timeout=max(0.1, min(self._cfg.drain_seconds, 10.0)),
            # A client that never finishes its handshake holds a socket: bounded.
            open_timeout=self._cfg.handshake_timeout,
            ping_interval=self._cfg.ping_interval or None,
            ping_timeout=self._cfg.ping_timeout or None,
        )
        log.info("gateway listening", url=self.url, id=self.id)

    def ready(self) -> bool:
        """True when clients should be sent here: nodes known, one of them up."""
        up = self._health.up_nodes()
        return (
            not self._stopping
            and bool(self._discovery.members())
            and bool(up)
            and self._notices.started(set(up))
        )

    async def close(self) -> None:
        """Stop: not ready, close every socket with 1001, wait up to cfg.drain_seconds."""
        self._stopping = True
        if self._server is not None:
            self._server.close(close_connections=True, code=CloseCode.GOING_AWAY,
                               reason="going away")  # fmt: skip
            try:
                async with asyncio.timeout(self._cfg.drain_seconds):
                    await self._server.wait_closed()
            except TimeoutError:
                log.warning("connections still open after drain", seconds=self._cfg.drain_seconds)
        await self._notices.close()
        await self._fanout.close()
        await self._presence.close()
        await self._publisher.close()
        await self._joiner.close()

    def _handshake(self, conn: ServerConnection, request: Request) -> Response | None:
        """Serve the web client; refuse wrong paths (404), foreign origins (403)
        and missing or bad users and tokens (401)."""
        if self._stopping:
            return conn.respond(503, "shutting down\n")
        if "upgrade" not in request.headers.get("Connection", "").lower():
            page = self._web.respond(request)
            if page is not None:
                return page
        if not self._web.origin_allowed(request):
            return conn.respond(403, "this origin may not open a WebSocket here\n")
        try:
            self._identities[conn] = self._authenticate(request)
        except HandshakeRefused as refused:
            return conn.respond(refused.status, refused.message + "\n")
        except AuthFailed as failed:
            AUTH_FAILURES.labels(reason=failed.reason).inc()
            log.info("handshake refused", reason=failed.reason, detail=failed.detail)
            # Nothing that tells a prober which check failed, with auth on.
            body = failed.detail if self._verifier is None else "unauthorized"
            response = conn.respond(401, body + "\n")
            if self._verifier is not None:
                response.headers["WWW-Authenticate"] = 'Bearer realm="parley"'
            return response
        return None

    def _authenticate(self, request: Request) -> Identity:
        return authenticate(request.path, request.headers.get("Authorization"), self._verifier)

    async def _connection(self, conn: ServerConnection) -> None:
        """The per-connection error boundary."""
        assert conn.request is not None  # set once the handshake succeeded
        identity = self._identities.pop(conn, None)
        if identity is None:  # (not seen by _handshake: cannot happen with websockets 15)
            await conn.close(4001, "unauthorized")
            return
        user = identity.user
        if len(self._sessions.of(user)) >= self._cfg.max_connections_per_user:
            WS_DISCONNECTS.labels(reason="too_many_connections").inc()
            await conn.close(TOO_MANY_CONNECTIONS, "too many connections for this user")
            return
        session = Session(
            conn,
            identity,
            self._handlers.handle,
            queue_size=self._cfg.outbound_queue,
            rate=self._cfg.rate_limit,
            burst=self._cfg.rate_burst,
            user_bucket=self._sessions.bucket(user),
            verify=self._verifier.verify if self._verifier is not None else None,
            limits=self._limits,
            start_send=self._handlers.start_send,
        )
        WS_CONNECTIONS.inc()
        self._sessions.add(session)
        try:
            await session.run()
        except Exception:
            log.exception("connection failed", user=user)
            try:
                async with asyncio.timeout(CLOSE_GRACE):
                    await conn.close(CloseCode.INTERNAL_ERROR, "internal error")
            except TimeoutError:
                conn.transport.abort()
        finally:
            self._sessions.remove(session)
            self._handlers.disconnected(session)
            WS_CONNECTIONS.dec()
