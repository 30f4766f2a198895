"""Process configuration shared by the command line, the chart and tests.

Every field maps to a flag `--name` and an environment variable
`PARLEY_NAME` (DESIGN §1); `parley.cli` does that mapping.
"""

from __future__ import annotations

from dataclasses import dataclass, field


def parse_nodes(spec: str) -> dict[str, str]:
    """Parse `node-0=127.0.0.1:7001,node-1=...` into {node_id: address}.

    Raises:
        ValueError: when an item is not `id=host:port`.
    """
    nodes: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        node_id, sep, address = item.partition("=")
        if not sep or not node_id or ":" not in address:
            raise ValueError(f"bad node spec {item!r}: want id=host:port")
        nodes[node_id] = address
    return nodes


def format_nodes(nodes: dict[str, str]) -> str:
    """The inverse of parse_nodes."""
    return ",".join(f"{node_id}={address}" for node_id, address in sorted(nodes.items()))


@dataclass(slots=True)
class NodeConfig:
    """How to run one `parley node`."""

    id: str
    grpc: str = "127.0.0.1:7000"
    http: str = "127.0.0.1:9100"
    nodes: dict[str, str] = field(default_factory=dict)
    data_dir: str = "./data"
    store: str = "sqlite"  # sqlite | memory
    replicas: int = 3
    discovery: str = "static"  # static | kubernetes
    # kubernetes discovery: namespace and headless Service whose EndpointSlices list nodes
    k8s_namespace: str = ""
    k8s_service: str = "parley-node"
    # the gRPC port nodes listen on, for addresses built from EndpointSlices
    k8s_port: int = 7000
    # seconds a vanished node stays in the placement set (a restart is not a removal)
    member_grace: float = 300.0
    # rooms this node moves to their new replica group at once, at most
    move_concurrency: int = 8
    # a retried message (same user and id) gets its original seq within the
    # room's last dedupe_count messages and dedupe_seconds
    dedupe_seconds: float = 300.0
    dedupe_count: int = 100_000
    # committed entries each room keeps in memory; older ones are read from
    # the store (history pages, followers far behind get a snapshot)
    log_tail: int = 1000
    # a room's state is stored as a snapshot every this many entries, so a
    # restart reads the snapshot and the entries after it
    snapshot_every: int = 10_000
    # the default retention (0: no bound): keep each room's last
    # retention_entries messages and those of the last retention_seconds
    retention_entries: int = 0
    retention_seconds: int = 0
    # seconds between retention sweeps
    retention_sweep_seconds: float = 30.0
    # rooms with more members than this send no online/offline events
    presence_limit: int = 100
    # the archive: a PostgreSQL (or CockroachDB) DSN, or a file holding one
    # (a mounted Secret); empty: no archive
    archive_dsn: str = ""
    archive_dsn_file: str = ""
    # seconds between archive passes, and entries per room per batch
    archive_every: float = 0.5
    archive_batch: int = 1000
    # mTLS between pods (all three set, or none): this process's certificate
    # and key, and the CA whose certificates peers must show; re-read on change
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca: str = ""
    # the name peers' certificates are checked against (pod IPs change; this does not)
    tls_server_name: str = "parley-node"
    # seconds to drain on SIGTERM before exiting
    drain_seconds: float = 5.0
    log_format: str = "auto"  # auto | json | console
    log_level: str = "info"


@dataclass(slots=True)
class GatewayConfig:
    """How to run one `parley gateway`."""

    ws: str = "127.0.0.1:8080"
    http: str = "127.0.0.1:9100"
    nodes: dict[str, str] = field(default_factory=dict)
    replicas: int = 3
    discovery: str = "static"
    k8s_namespace: str = ""
    k8s_service: str = "parley-node"
    k8s_port: int = 7000
    member_grace: float = 300.0
    # jwt: every connection shows a token (jwt_secret and/or jwt_jwks);
    # off: `?user=NAME` is believed (local development only)
    auth: str = "jwt"
    jwt_secret: str = ""  # HS256
    jwt_secret_file: str = ""  # HS256, from a file (a mounted Secret), re-read on change
    jwt_jwks: str = ""  # a JWKS file of RS256/ES256/EdDSA public keys, re-read on change
    jwt_issuer: str = ""  # required `iss` (empty: not checked)
    jwt_audience: str = ""  # required `aud` (empty: not checked)
    jwt_leeway: float = 30.0  # seconds of clock skew allowed on exp/nbf
    # origins (scheme://host:port, comma-separated, or *) whose pages may open
    # a WebSocket here besides the web client's own; empty: only its own
    allowed_origins: str = ""
    id: str = ""  # gateway id for presence; defaults to host:port
    max_frame_bytes: int = 64 * 1024
    # per-connection token bucket: sustained frames/s and burst
    rate_limit: float = 50.0
    rate_burst: int = 100
    outbound_queue: int = 1024
    # one user over all their connections to this gateway: frames/s and burst
    # (never below the per-connection limit)
    user_rate_limit: float = 200.0
    user_rate_burst: int = 400
    max_rooms_per_connection: int = 1000
    max_connections_per_user: int = 32
    # seconds a client has to finish the HTTP upgrade
    handshake_timeout: float = 10.0
    # a ping every ping_interval s; no pong within ping_timeout s closes (1011)
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    # client JSON: deepest nesting, longest number (characters)
    max_json_depth: int = 8
    max_number_chars: int = 24
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca: str = ""
    tls_server_name: str = "parley-node"
    drain_seconds: float = 5.0
    log_format: str = "auto"
    log_level: str = "info"
