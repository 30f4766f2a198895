"""One shared gRPC channel per node, with keepalive so a silent peer is noticed.

gRPC multiplexes every call on one HTTP/2 connection, so all traffic to a node
(replication, elections, health watches, subscriptions) shares one channel.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from parley.cluster.discovery import Discovery, Members
from parley.observability.log import get_logger
from parley.security.tls import TlsFiles

log = get_logger(__name__)

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
"""Largest gRPC message either side accepts: big Append batches and log transfers."""

CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    # A ping every second, dropped after one more second without an answer: a
    # SIGSTOPped or cut-off peer fails every call on the channel within ~2 s.
    ("grpc.keepalive_time_ms", 1000),
    ("grpc.keepalive_timeout_ms", 1000),
    # grpc-core (1.85) times the keepalive ping's ack with the generic ping
    # timeout, 60 s by default, so keepalive_timeout_ms alone does not fail a
    # silent peer's streams; measured: without this a SIGSTOPped peer is never
    # noticed within 30 s, with it within ~2 s.
    ("grpc.http2.ping_timeout_ms", 1000),
    # Ping even when only a (quiet) Health.Watch stream is open, or none at all.
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # A restarted pod is back in seconds; do not wait the default 1..120 s.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
]
"""Client options of every peer channel."""

SERVER_OPTIONS: list[tuple[str, Any]] = [
    # Accept the clients' 1 s pings; the default (5 min) would answer them with
    # GOAWAY "too_many_pings" and close the connection.
    ("grpc.http2.min_ping_interval_without_data_ms", 500),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_ping_strikes", 0),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]
"""Options for grpc.aio.server(options=...) on every node, matching CHANNEL_OPTIONS."""


class ChannelPool:
    """Channels to the discovered nodes, one per node id, created on first use.

    The pool follows discovery: a node whose address changes gets a new channel
    on the next get(), and a removed node's channel is closed. Callers must not
    close channels they get; they call get() again for each new RPC or stream
    rather than keeping a channel across a discovery change. Calls still open on
    a replaced channel are cancelled after a 1 s grace; grpc.aio then raises
    asyncio.CancelledError (not AioRpcError) in the caller's read.
    """

    def __init__(self, discovery: Discovery, tls: TlsFiles | None = None) -> None:
        """Follow `discovery`'s node set from now until close().

        Args:
            discovery: the node set.
            tls: mTLS credentials; None for plaintext channels.
        """
        self._discovery = discovery
        self._tls = tls
        self._tls_version = tls.version if tls is not None else 0
        self._addresses: Members = discovery.members()
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._closed = False
        self._unsubscribe = discovery.subscribe(self._on_members)

    def address(self, node_id: str) -> str:
        """The node's current "host:port".

        Raises:
            KeyError: the node is not a member.
        """
        return self._addresses[node_id]

    def get(self, node_id: str) -> grpc.aio.Channel:
        """The shared channel to the node, created on first use.

        Raises:
            KeyError: the node is not a member.
            RuntimeError: the pool is closed.
        """
        if self._closed:
            raise RuntimeError("ChannelPool is closed")
        tls = self._tls
        if tls is not None:
            tls.current()  # (re-reads the files at most once a second)
            if tls.version != self._tls_version:
                # New certificates: new channels use them; calls open on the
                # old ones finish on the connections they have.
                self._tls_version = tls.version
                log.info("peer channels replaced: new certificates")
                for old in list(self._channels):
                    self._close_later(self._channels.pop(old))
        channel = self._channels.get(node_id)
        if channel is None:
            address = self._addresses[node_id]
            if tls is None:
                channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
            else:
                channel = grpc.aio.secure_channel(
                    address,
                    tls.channel_credentials(),
                    options=[*CHANNEL_OPTIONS, *tls.channel_options()],
                )
            self._channels[node_id] = channel
        return channel

    async def close(self) -> None:
        """Stop following discovery and close every channel (cancels their calls)."""
        self._closed = True
        self._unsubscribe()
        channels = list(self._channels.values())
        self._channels.clear()
        await asyncio.gather(*(channel.close(None) for channel in channels), *self._closing)

    def _on_members(self, members: Members) -> None:
        """Drop channels whose node left or moved; get() makes new ones."""
        old = self._addresses
        self._addresses = dict(members)
        for node_id in list(self._channels):
            if old.get(node_id) != members.get(node_id):
                log.info(
                    "peer channel replaced",
                    peer=node_id,
                    old=old.get(node_id),
                    new=members.get(node_id),
                )
                self._close_later(self._channels.pop(node_id))

    def _close_later(self, channel: grpc.aio.Channel) -> None:
        """Close a channel in the background; a discovery callback cannot await."""
        # A short grace lets an RPC that just started on the old address finish.
        task = asyncio.get_running_loop().create_task(channel.close(grace=1.0))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
