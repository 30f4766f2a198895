"""The `parley` command: servers, the local cluster and the client commands.

Subcommands (DESIGN §1):

* `parley node` / `parley gateway` run one server. Their flags are generated
  from the fields of NodeConfig / GatewayConfig, so a new config field is a
  new flag (and a new `PARLEY_<FIELD>` environment variable) with no edit
  here. Precedence: flag, then environment, then the dataclass default.
* `parley up` runs a whole local cluster (see parley.supervisor).
* `parley send`, `parley tail`, `parley rooms` and `parley chat` are the
  client (parley.client); this module only wires their arguments.

Parsing is kept in pure functions (`parse_node_config`, `parse_gateway_config`)
taking an explicit environment, so tests and the chart tests can check
exactly what a command line and an environment produce.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from parley.config import GatewayConfig, NodeConfig, parse_nodes

ENV_PREFIX = "PARLEY_"
"""Every server flag `--some-name` can also be set as `PARLEY_SOME_NAME`."""

DEFAULT_URL = "ws://127.0.0.1:8080/ws"
"""Where the client commands connect when neither --url nor PARLEY_URL is set."""

C = TypeVar("C", NodeConfig, GatewayConfig)

# Values a field may take, checked for flags and environment alike so a typo
# in a chart value fails at start-up instead of falling back silently.
_CHOICES: dict[str, tuple[str, ...]] = {
    "store": ("sqlite", "memory"),
    "discovery": ("static", "kubernetes"),
    "log_format": ("auto", "json", "console"),
    "log_level": ("debug", "info", "warning", "error"),
    "auth": ("jwt", "off"),
}

# One line of help per field; a field missing here still gets a flag.
_HELP: dict[str, str] = {
    "id": "stable identity of this process (node: node-0 locally, the pod name on Kubernetes)",
    "grpc": "host:port to serve gRPC on",
    "http": "host:port to serve /metrics, /healthz and /readyz on",
    "ws": "host:port to serve WebSocket clients on (path /ws)",
    "nodes": "static node list: node-0=host:port,node-1=host:port,...",
    "data_dir": "directory for this node's room logs",
    "store": "log store backend",
    "replicas": "replicas per room (fewer when there are fewer nodes)",
    "discovery": "where the node set comes from",
    "k8s_namespace": "Kubernetes namespace of the node Service (empty: this pod's)",
    "k8s_service": "headless Service whose EndpointSlices list the nodes",
    "k8s_port": "gRPC port of nodes found through EndpointSlices",
    "member_grace": "seconds a vanished node stays in the placement set",
    "move_concurrency": "rooms this node moves to a new replica group at once, at most",
    "dedupe_seconds": "a retried message gets its original seq for this long (room time)",
    "dedupe_count": "... and within this many of the room's latest messages",
    "log_tail": "committed entries per room kept in memory (older ones are read from disk)",
    "snapshot_every": "entries between stored snapshots of a room's state",
    "retention_entries": "default retention: keep each room's last N messages (0: all)",
    "retention_seconds": "default retention: keep messages of the last N seconds (0: all)",
    "retention_sweep_seconds": "seconds between retention sweeps",
    "archive_dsn": "PostgreSQL/CockroachDB DSN of the archive (every committed entry, kept "
    "beyond retention); empty: no archive",
    "archive_dsn_file": "file holding the archive DSN (a mounted Secret)",
    "archive_every": "seconds between archive passes",
    "archive_batch": "entries per room written to the archive in one batch",
    "presence_limit": "rooms with more members than this send no online/offline events",
    "drain_seconds": "seconds to drain on SIGTERM before exiting",
    "auth": "jwt: every client shows a token; off: ?user=NAME is believed (development only)",
    "jwt_secret": "HS256 secret tokens may be signed with",
    "jwt_secret_file": "file holding the HS256 secret (a mounted Secret; re-read on change)",
    "jwt_jwks": "JWKS file of RS256/ES256/EdDSA public keys (kid selects; re-read on change)",
    "jwt_issuer": "the iss claim every token must have (empty: not checked)",
    "jwt_audience": "an aud claim every token must have (empty: not checked)",
    "jwt_leeway": "seconds of clock skew allowed on exp and nbf",
    "user_rate_limit": "sustained client frames per second per user, all their connections "
    "(at least --rate-limit)",
    "user_rate_burst": "client frame burst per user",
    "max_rooms_per_connection": "rooms one connection may be joined to",
    "max_connections_per_user": "connections one user may hold to this gateway",
    "handshake_timeout": "seconds a client has to complete the WebSocket handshake",
    "ping_interval": "seconds between keepalive pings to each client",
    "ping_timeout": "seconds without a pong before a client is closed (1011)",
    "max_json_depth": "deepest JSON nesting accepted in a client frame",
    "max_number_chars": "longest JSON number (in characters) accepted in a client frame",
    "tls_cert": "PEM certificate for mTLS between pods (with --tls-key and --tls-ca)",
    "tls_key": "PEM private key of --tls-cert",
    "tls_ca": "PEM CA bundle peers' certificates must chain to",
    "tls_server_name": "name the nodes' certificates are checked against",
    "allowed_origins": "comma-separated origins (or *) whose pages may open a WebSocket "
    "besides the web client's own",
    "max_frame_bytes": "largest client frame accepted",
    "rate_limit": "sustained client frames per second per connection",
    "rate_burst": "client frame burst per connection",
    "outbound_queue": "frames queued per connection before a slow client is dropped",
    "log_format": "log rendering (auto: console at a terminal, JSON otherwise)",
    "log_level": "minimum log level",
}


class ConfigError(ValueError):
    """A setting (flag or environment variable) has a value that cannot be used."""


def flag_name(field_name: str) -> str:
    """The command-line flag for a config field: data_dir -> --data-dir."""
    return "--" + field_name.replace("_", "-")


def env_name(field_name: str) -> str:
    """The environment variable for a config field: data_dir -> PARLEY_DATA_DIR."""
    return ENV_PREFIX + field_name.upper()


def _nodes_type(value: str) -> dict[str, str]:
    """argparse type for --nodes: turns parse_nodes' ValueError into a usage error."""
    try:
        return parse_nodes(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _field_default(field: dataclasses.Field[Any]) -> Any:
    """The default of a dataclass field, or MISSING when it is required."""
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def _converter(field: dataclasses.Field[Any]) -> Callable[[str], Any]:
    """How to turn a string into this field's value, judged by its default.

    The annotations are strings (`from __future__ import annotations`), so the
    default's type is the reliable signal: int, float, str, or a dict (the
    node list).
    """
    default = _field_default(field)
    if isinstance(default, dict):
        return _nodes_type
    if isinstance(default, bool):  # before int: bool is an int subclass
        return _parse_bool
    if isinstance(default, int):
        return int
    if isinstance(default, float):
        return float
    return str


def _parse_bool(value: str) -> bool:
    """Parse true/false style strings for boolean fields."""
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {value!r}")


def add_config_flags(parser: argparse.ArgumentParser, cls: type[C]) -> None:
    """Add one flag per field of `cls` to `parser`, each defaulting to None.

    None means "not given on the command line"; config_from_args then looks
    at the environment and finally the dataclass default.
    """
    for field in dataclasses.fields(cls):
        default = _field_default(field)
        shown = "required" if default is dataclasses.MISSING else f"default {default!r}"
        if isinstance(default, dict):
            shown = "default: none"
        if field.name in _CHOICES:
            shown = f"one of {', '.join(_CHOICES[field.name])}; {shown}"
        parser.add_argument(
            flag_name(field.name),
            dest=field.name,
            type=_converter(field),
            choices=_CHOICES.get(field.name),
            default=None,
            metavar=field.name.upper(),
            help=f"{_HELP.get(field.name, field.name)} (env {env_name(field.name)}; {shown})",
        )


def config_from_args(
    cls: type[C], ns: argparse.Namespace, env: Mapping[str, str] | None = None
) -> C:
    """Build a `cls` config from parsed flags, then `env`, then the defaults.

    Args:
        cls: NodeConfig or GatewayConfig.
        ns: the result of a parser made with add_config_flags (unset flags are None).
        env: the environment to read PARLEY_* from; os.environ when None.

    Returns:
        The config.

    Raises:
        ConfigError: when an environment value does not parse or is not one of
            the allowed choices, or a required field is set nowhere.
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        value = getattr(ns, field.name, None)
        if value is None and env.get(env_name(field.name), "") != "":
            raw = env[env_name(field.name)]
            try:
                value = _converter(field)(raw)
            except argparse.ArgumentTypeError as exc:
                raise ConfigError(f"{env_name(field.name)}={raw!r}: {exc}") from None
            except ValueError:
                kind = _converter(field).__name__
                raise ConfigError(f"{env_name(field.name)}={raw!r}: want {kind}") from None
            allowed = _CHOICES.get(field.name)
            if allowed is not None and value not in allowed:
                raise ConfigError(
                    f"{env_name(field.name)}={raw!r}: choose from {', '.join(allowed)}"
                )
        if value is None:
            if _field_default(field) is dataclasses.MISSING:
                raise ConfigError(
                    f"{flag_name(field.name)} is required (or set {env_name(field.name)})"
                )
            continue  # the dataclass default applies
        values[field.name] = value
    return cls(**values)


def _parse_config(cls: type[C], prog: str, argv: Sequence[str], env: Mapping[str, str]) -> C:
    """Parse server flags for `cls` alone (no subcommand), exiting 2 on errors."""
    parser = argparse.ArgumentParser(prog=prog)
    add_config_flags(parser, cls)
    ns = parser.parse_args(list(argv))
    try:
        return config_from_args(cls, ns, env)
    except ConfigError as exc:
        parser.error(str(exc))


def parse_node_config(argv: Sequence[str], env: Mapping[str, str]) -> NodeConfig:
    """The NodeConfig for `parley node ARGV` in environment `env`.

    Raises:
        SystemExit: with status 2 and a usage message when a value is bad.
    """
    return _parse_config(NodeConfig, "parley node", argv, env)


def parse_gateway_config(argv: Sequence[str], env: Mapping[str, str]) -> GatewayConfig:
    """The GatewayConfig for `parley gateway ARGV` in environment `env`.

    Raises:
        SystemExit: with status 2 and a usage message when a value is bad.
    """
    return _parse_config(GatewayConfig, "parley gateway", argv, env)


def _add_client_flags(parser: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    """--url, --user and --token, shared by every client subcommand."""
    parser.add_argument(
        "--url",
        default=env.get("PARLEY_URL") or DEFAULT_URL,
        help=f"gateway WebSocket URL (env PARLEY_URL; default {DEFAULT_URL})",
    )
    parser.add_argument(
        "--user",
        default=env.get("PARLEY_USER") or env.get("USER") or "me",
        help="user name when auth is off (env PARLEY_USER; default $USER)",
    )
    parser.add_argument(
        "--token",
        default=env.get("PARLEY_TOKEN") or None,
        help="JWT to authenticate with (env PARLEY_TOKEN); cannot be refreshed",
    )
    parser.add_argument(
        "--token-file",
        default=env.get("PARLEY_TOKEN_FILE") or None,
        help="file holding the JWT, read again to refresh it before it expires "
        "(env PARLEY_TOKEN_FILE)",
    )


def build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    """The whole `parley` parser; client defaults come from `env`."""
    parser = argparse.ArgumentParser(
        prog="parley", description="Parley: a distributed chat system."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    node = sub.add_parser("node", help="run one room node (gRPC)")
    add_config_flags(node, NodeConfig)
    gateway = sub.add_parser("gateway", help="run one WebSocket gateway")
    add_config_flags(gateway, GatewayConfig)
    # Each server subcommand keeps its own parser so a bad environment value
    # is reported with that subcommand's usage line.
    node.set_defaults(subparser=node)
    gateway.set_defaults(subparser=gateway)

    # Imported here, not at module top, so `parley send` does not pay for the
    # supervisor's imports; the module itself is light.
    from parley.supervisor import add_up_flags

    up = sub.add_parser("up", help="run a local cluster: nodes and gateways on 127.0.0.1")
    add_up_flags(up)

    send = sub.add_parser("send", help="send one message to a room")
    _add_client_flags(send, env)
    send.add_argument("room")
    send.add_argument("text")

    tail = sub.add_parser("tail", help="print a room's messages as they arrive")
    _add_client_flags(tail, env)
    tail.add_argument("room")
    tail.add_argument("--since", type=int, default=None, help="start after this seq")
    tail.add_argument("--json", dest="as_json", action="store_true", help="one JSON per line")

    rooms = sub.add_parser("rooms", help="list rooms")
    _add_client_flags(rooms, env)
    rooms.add_argument("--json", dest="as_json", action="store_true", help="print JSON")

    chat = sub.add_parser("chat", help="the terminal chat app")
    _add_client_flags(chat, env)
    return parser


def _server_config(cls: type[C], ns: argparse.Namespace, env: Mapping[str, str]) -> C:
    try:
        return config_from_args(cls, ns, env)
    except ConfigError as exc:
        subparser: argparse.ArgumentParser = ns.subparser
        subparser.error(str(exc))


def _dispatch(
    parser: argparse.ArgumentParser, ns: argparse.Namespace, env: Mapping[str, str]
) -> int:
    """Run the chosen subcommand and return its exit status.

    Server and client modules are imported only when their command runs, so
    each command works while the others' modules are missing or broken.
    """
    if ns.command in ("node", "gateway"):
        from parley.malloc import limit_arenas

        limit_arenas()  # before gRPC starts its threads
    if ns.command == "node":
        from parley.node.main import run as run_node

        return run_node(_server_config(NodeConfig, ns, env))
    if ns.command == "gateway":
        from parley.gateway.main import run as run_gateway

        return run_gateway(_server_config(GatewayConfig, ns, env))
    if ns.command == "up":
        from parley.supervisor import options_from_args, run_up

        return run_up(options_from_args(ns))
    from parley.client.tokens import file_source

    source = file_source(ns.token_file) if ns.token_file else None
    if ns.command == "chat":
        from parley.client.app import run_chat

        return run_chat(ns.url, ns.user, ns.token, source)

    from parley.client import commands

    if ns.command == "send":
        return commands.send(ns.url, ns.user, ns.token, ns.room, ns.text, source)
    if ns.command == "tail":
        return commands.tail(ns.url, ns.user, ns.token, ns.room, ns.since, ns.as_json, source)
    if ns.command == "rooms":
        return commands.rooms(ns.url, ns.user, ns.token, ns.as_json, source)
    parser.error(f"unknown command {ns.command!r}")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `parley` console script; exits with the command's status."""
    env = os.environ
    parser = build_parser(env)
    ns = parser.parse_args(sys.argv[1:] if argv is None else argv)
    sys.exit(_dispatch(parser, ns, env))


def node_main() -> None:
    """Console script `parley-node`: the same flags as `parley node`."""
    main(["node", *sys.argv[1:]])


def gateway_main() -> None:
    """Console script `parley-gateway`: the same flags as `parley gateway`."""
    main(["gateway", *sys.argv[1:]])
