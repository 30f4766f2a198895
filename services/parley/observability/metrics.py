"""Every Prometheus metric Parley exports (DESIGN §6), defined once.

No metric has a per-room or per-user label: their number is bounded by the
number of nodes, not by traffic.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# 50 µs .. ~13 s: resolves sub-millisecond ordering and multi-second failovers.
LATENCY_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0,
)  # fmt: skip

ORDER_LATENCY = Histogram(
    "parley_order_latency_seconds",
    "Administrator: time from receiving a publish to assigning its seq.",
    buckets=LATENCY_BUCKETS,
)
COMMIT_LATENCY = Histogram(
    "parley_commit_latency_seconds",
    "Administrator: time from assigning a seq to a majority holding it durably.",
    buckets=LATENCY_BUCKETS,
)
DELIVERY_LATENCY = Histogram(
    "parley_delivery_latency_seconds",
    "Gateway: time from a client's send to the entry being fanned out.",
    buckets=LATENCY_BUCKETS,
)
MESSAGES_COMMITTED = Counter(
    "parley_messages_committed_total",
    "Administrator: log entries committed (all kinds).",
)
ROOMS = Gauge("parley_rooms", "Rooms hosted by this node, by role.", ["role"])
ELECTIONS = Counter(
    "parley_elections_total", "Elections this node started, by outcome.", ["outcome"]
)
REPLICATION_LAG = Gauge(
    "parley_replication_lag_entries",
    "Administrator: most entries any follower is behind, over all rooms.",
)
TWOPC = Counter("parley_twopc_total", "Room moves (two-phase commits), by outcome.", ["outcome"])
for _outcome in ("committed", "aborted"):
    TWOPC.labels(outcome=_outcome)  # both series exist from start-up, at 0
TWOPC_DURATION = Histogram(
    "parley_twopc_duration_seconds",
    "Room move duration as its coordinator saw it, prepare to decision.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
MOVES_IN_FLIGHT = Gauge(
    "parley_room_moves_in_flight", "Room moves this node coordinates right now."
)
UNDER_REPLICATED = Gauge(
    "parley_rooms_under_replicated",
    "Rooms this node administers whose live replicas are fewer than R.",
)
SNAPSHOTS = Counter(
    "parley_snapshots_total",
    "Room snapshots sent to followers behind the in-memory log, and installed here.",
    ["direction"],
)
for _direction in ("sent", "installed"):
    SNAPSHOTS.labels(direction=_direction)
SNAPSHOT_ENTRIES = Counter(
    "parley_snapshot_history_entries_total",
    "Committed entries copied to followers ahead of their snapshots.",
)
RETENTION_DELETED = Counter(
    "parley_retention_deleted_entries_total",
    "Entries this node deleted from its store under the rooms' retention policies.",
)
STORE_WRITABLE = Gauge(
    "parley_store_writable",
    "0 while this node's store cannot write (disk full): it acknowledges nothing.",
)
STORE_WRITABLE.set(1)  # (every process exports it; only a node's store turns it 0)
STORE_DAMAGED = Counter(
    "parley_store_damaged_rooms_total",
    "Stored room copies found damaged (checksum, missing entries) and rebuilt.",
)
PEER_UP = Gauge("parley_peer_up", "1 while the health watch sees the peer SERVING.", ["peer"])
ARCHIVE_LAG = Gauge(
    "parley_archive_lag_entries",
    "Administrator: committed entries of its rooms the archive has not confirmed yet.",
)
ARCHIVED_ENTRIES = Counter(
    "parley_archived_entries_total", "Administrator: entries written to the archive."
)
WS_CONNECTIONS = Gauge("parley_ws_connections", "Open WebSocket connections.")
WS_FRAMES = Counter("parley_ws_frames_total", "WebSocket frames, by direction.", ["direction"])
WS_DISCONNECTS = Counter(
    "parley_ws_disconnects_total", "WebSocket disconnects, by reason.", ["reason"]
)
DISCONNECT_REASONS = (
    "normal",  # the client closed (1000/1001), or the gateway drained
    "error",  # the connection broke (no close frame, or an error code from the client)
    "too_large",  # a frame over max_frame_bytes (1009)
    "slow_consumer",  # the outbound queue filled (1013)
    "rate_limited",  # kept sending far over the rate limit (1008)
    "token_expired",  # the token expired and was not refreshed (4001)
    "too_many_connections",  # the user already held max_connections_per_user (4008)
    "keepalive_timeout",  # no pong within ping_timeout (1011)
    "internal",  # a gateway bug (1011)
)
for _reason in DISCONNECT_REASONS:
    WS_DISCONNECTS.labels(reason=_reason)  # every series from start-up, at 0
AUTH_FAILURES = Counter(
    "parley_auth_failures_total",
    "Handshakes and in-connection token refreshes refused, by reason.",
    ["reason"],
)
