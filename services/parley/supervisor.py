"""`parley up`: a whole local cluster in one terminal.

Starts N nodes and G gateways as child processes on 127.0.0.1 with static
discovery, waits until every node's gRPC health says SERVING and every
gateway's /readyz says 200, prints where to connect, relays the children's
output with a per-process prefix, and on Ctrl-C or SIGTERM stops them all.

Each child runs in a session (and so a process group) of its own: a Ctrl-C
at the terminal reaches only this supervisor, which then stops the children
in order (SIGTERM, a grace period, SIGKILL) instead of every process racing
to die at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib
import importlib.util
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from parley.config import format_nodes

HOST = "127.0.0.1"
"""`parley up` is a local tool: everything listens on loopback only."""

_COLOURS = ("36", "33", "35", "32", "34", "91", "96", "93", "95", "92")
"""ANSI colours for the per-process prefixes, cycled."""


class StartupError(RuntimeError):
    """The cluster did not come up; the message says which process and why."""


@dataclasses.dataclass(slots=True)
class UpOptions:
    """What `parley up` starts and where."""

    nodes: int = 3
    gateways: int = 1
    port: int = 8080
    """WebSocket port of the first gateway; gateway i listens on port + i."""
    data_dir: str = "./data"
    store: str = "sqlite"
    replicas: int = 3
    base_grpc: int = 7001
    """gRPC port of node-0; node i listens on base_grpc + i."""
    base_node_http: int = 9101
    """HTTP (/metrics) port of node-0; node i listens on base_node_http + i."""
    base_gateway_http: int = 9200
    """HTTP (/metrics, /readyz) port of gateway-0; gateway i on base_gateway_http + i."""
    jwt_secret: str = ""
    prometheus: bool = False
    prometheus_port: int = 9090
    ready_timeout: float = 30.0
    stop_timeout: float = 10.0
    """Seconds between SIGTERM and SIGKILL; longer than a node's drain time."""


@dataclasses.dataclass(slots=True)
class ChildSpec:
    """One process `parley up` runs."""

    name: str
    role: str  # "node" | "gateway"
    argv: list[str]
    http: str
    grpc: str = ""
    ws: str = ""


def add_up_flags(parser: argparse.ArgumentParser) -> None:
    """Add `parley up`'s flags to `parser`."""
    d = UpOptions()
    add = parser.add_argument
    add("--nodes", type=int, default=d.nodes, help=f"number of nodes (default {d.nodes})")
    add("--gateways", type=int, default=d.gateways, help=f"number of gateways ({d.gateways})")
    add("--port", type=int, default=d.port, help=f"WebSocket port of gateway 0 ({d.port})")
    add("--data-dir", default=d.data_dir, help=f"where nodes keep their logs ({d.data_dir})")
    add("--store", choices=("sqlite", "memory"), default=d.store, help=f"log store ({d.store})")
    add("--replicas", type=int, default=d.replicas, help=f"replicas per room ({d.replicas})")
    add("--base-grpc", type=int, default=d.base_grpc, help=f"gRPC port of node-0 ({d.base_grpc})")
    add(
        "--base-node-http",
        type=int,
        default=d.base_node_http,
        help=f"HTTP port of node-0 ({d.base_node_http})",
    )
    add(
        "--base-gateway-http",
        type=int,
        default=d.base_gateway_http,
        help=f"HTTP port of gateway-0 ({d.base_gateway_http})",
    )
    add("--jwt-secret", default=d.jwt_secret, help="turn gateway auth on with this HS256 secret")
    add("--prometheus", action="store_true", help="also start Prometheus scraping every process")
    add(
        "--prometheus-port",
        type=int,
        default=d.prometheus_port,
        help=f"Prometheus UI port with --prometheus ({d.prometheus_port})",
    )
    add(
        "--ready-timeout",
        type=float,
        default=d.ready_timeout,
        help=f"seconds to wait for the cluster to be ready ({d.ready_timeout:g})",
    )


def options_from_args(ns: argparse.Namespace) -> UpOptions:
    """UpOptions from a namespace parsed with add_up_flags."""
    return UpOptions(
        **{
            f.name: getattr(ns, f.name)
            for f in dataclasses.fields(UpOptions)
            if hasattr(ns, f.name)
        }
    )


def plan(opts: UpOptions, python: str = sys.executable, log_format: str = "") -> list[ChildSpec]:
    """The processes to start for `opts`: nodes first, then gateways.

    Args:
        opts: the cluster shape and ports.
        python: the interpreter that runs `-m parley`.
        log_format: passed as --log-format when not empty.

    Raises:
        ValueError: when the counts make no cluster.
    """
    if opts.nodes < 1 or opts.gateways < 0:
        raise ValueError("need at least one node and zero or more gateways")
    members = {f"node-{i}": f"{HOST}:{opts.base_grpc + i}" for i in range(opts.nodes)}
    spec = format_nodes(members)
    extra = ["--log-format", log_format] if log_format else []
    children: list[ChildSpec] = []
    for i in range(opts.nodes):
        name = f"node-{i}"
        http = f"{HOST}:{opts.base_node_http + i}"
        argv = [
            python, "-m", "parley", "node",
            "--id", name,
            "--grpc", members[name],
            "--http", http,
            "--nodes", spec,
            "--data-dir", str(Path(opts.data_dir) / name),
            "--store", opts.store,
            "--replicas", str(opts.replicas),
            "--discovery", "static",
            *extra,
        ]  # fmt: skip
        children.append(ChildSpec(name, "node", argv, http=http, grpc=members[name]))
    for i in range(opts.gateways):
        name = f"gateway-{i}"
        ws = f"{HOST}:{opts.port + i}"
        http = f"{HOST}:{opts.base_gateway_http + i}"
        argv = [
            python, "-m", "parley", "gateway",
            "--id", name,
            "--ws", ws,
            "--http", http,
            "--nodes", spec,
            "--replicas", str(opts.replicas),
            "--discovery", "static",
            # A local cluster without a secret is for development: ?user= is believed.
            *(["--jwt-secret", opts.jwt_secret] if opts.jwt_secret else ["--auth", "off"]),
            *extra,
        ]  # fmt: skip
        children.append(ChildSpec(name, "gateway", argv, http=http, ws=ws))
    return children


async def grpc_serving(address: str, seconds: float = 1.0) -> bool:
    """True when the gRPC health service at `address` says SERVING (overall, service "")."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=seconds)
        except grpc.aio.AioRpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


async def http_status(address: str, path: str, seconds: float = 1.0) -> int | None:
    """The HTTP status of GET `path` on `address`, or None when it cannot be had.

    A few lines of HTTP/1.1 instead of a client library: we need the status
    line only, and this runs inside whichever event loop the caller has.
    """
    host, _, port = address.rpartition(":")
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(seconds):
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n".encode()
            )
            await writer.drain()
            line = await reader.readline()
    except (OSError, TimeoutError):
        return None
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
    parts = line.split()
    if len(parts) < 2 or not parts[1].isdigit():
        return None
    return int(parts[1])


async def http_ready(address: str, seconds: float = 1.0) -> bool:
    """True when GET /readyz on `address` answers 200."""
    return await http_status(address, "/readyz", seconds) == 200


def port_in_use(address: str) -> bool:
    """True when something already listens on (or holds) `host:port`."""
    host, _, port = address.rpartition(":")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR like the servers themselves, so a port in TIME_WAIT
        # after a previous run is not reported as taken.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, int(port)))
        except OSError:
            return True
    return False


def _signal_group(pid: int, sig: int) -> None:
    """Send `sig` to the process group led by `pid`, ignoring one already gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class Supervisor:
    """Runs the children of one `parley up` and relays their output."""

    def __init__(self, opts: UpOptions, out: TextIO = sys.stdout) -> None:
        """Plan the children for `opts`; output goes to `out`."""
        self.opts = opts
        self.out = out
        self.colour = out.isatty()
        # Children write to a pipe, so their "auto" log format would be JSON;
        # at a terminal readable lines are what a person wants. An explicit
        # PARLEY_LOG_FORMAT still wins (flags are only added when it is unset).
        log_format = ""
        if "PARLEY_LOG_FORMAT" not in os.environ:
            log_format = "console" if self.colour else "json"
        self.children = plan(opts, log_format=log_format)
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self._relays: list[asyncio.Task[None]] = []
        self._watchers: list[asyncio.Task[None]] = []
        self._stopping = False
        self._up = False
        self._prometheus: asyncio.subprocess.Process | None = None
        self._stop = asyncio.Event()
        self._signals = 0
        self._width = max([len(c.name) for c in self.children] + [len("parley")])

    def say(self, text: str, name: str = "parley") -> None:
        """Print one line from `name` with its prefix."""
        prefix = f"{name:<{self._width}} |"
        if self.colour:
            index = next((i for i, c in enumerate(self.children) if c.name == name), -1)
            code = "1" if index < 0 else _COLOURS[index % len(_COLOURS)]
            prefix = f"\x1b[{code}m{prefix}\x1b[0m"
        try:
            self.out.write(f"{prefix} {text}\n")
            self.out.flush()
        except (BrokenPipeError, ValueError):
            # Output piped into something that quit (`parley up | head`):
            # keep supervising; losing log lines must not orphan the cluster.
            pass

    async def _relay(self, name: str, stream: asyncio.StreamReader) -> None:
        """Copy a child's output line by line, prefixed, until it closes."""
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # a line longer than the reader's limit: take a chunk
                line = await stream.read(65536)
            if not line:
                return
            self.say(line.decode(errors="replace").rstrip("\n"), name)

    async def _watch(self, name: str, proc: asyncio.subprocess.Process) -> None:
        """Report a child that exits while the cluster should be running."""
        code = await proc.wait()
        # Before the banner wait_ready reports a dead child (and fails start-up).
        if self._stopping or not self._up:
            return
        self.say(f"{name} exited unexpectedly (status {code}); the others keep running")
        if all(p.returncode is not None for p in self.procs.values()):
            self.say("every process has exited; stopping")
            self._stop.set()

    def check_ports(self) -> None:
        """Fail early, with the port named, when one of ours is taken.

        Raises:
            StartupError: naming the first port in use.
        """
        for child in self.children:
            for address in filter(None, (child.grpc, child.ws, child.http)):
                if port_in_use(address):
                    raise StartupError(
                        f"{address} is already in use ({child.name} needs it); "
                        "is another `parley up` running? Choose other ports with "
                        "--port/--base-grpc/--base-node-http/--base-gateway-http."
                    )

    def make_data_dirs(self) -> None:
        """Create each node's data directory (data_dir/node-i)."""
        for child in self.children:
            if child.role == "node":
                Path(self.opts.data_dir, child.name).mkdir(parents=True, exist_ok=True)

    async def start(self) -> None:
        """Start every child (nodes first) with its output relayed."""
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.make_data_dirs()
        for child in self.children:
            proc = await asyncio.create_subprocess_exec(
                *child.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
            self.procs[child.name] = proc
            where = " ".join(
                f"{k} {v}"
                for k, v in (("grpc", child.grpc), ("ws", child.ws), ("http", child.http))
                if v
            )
            self.say(f"started {child.name} pid {proc.pid} {where}")
            assert proc.stdout is not None
            self._relays.append(asyncio.create_task(self._relay(child.name, proc.stdout)))
            self._watchers.append(asyncio.create_task(self._watch(child.name, proc)))

    async def _ready(self, child: ChildSpec) -> bool:
        """One readiness probe of `child`."""
        if child.role == "node":
            return await grpc_serving(child.grpc)
        return await http_ready(child.http)

    async def wait_ready(self, seconds: float) -> None:
        """Wait until every child is ready.

        Raises:
            StartupError: when a child exits first or the deadline passes.
        """
        deadline = time.monotonic() + seconds
        pending = list(self.children)
        while pending:
            for child in pending:
                code = self.procs[child.name].returncode
                if code is not None:
                    raise StartupError(
                        f"{child.name} exited with status {code} before it was ready "
                        "(its output is above)"
                    )
            results = await asyncio.gather(*(self._ready(c) for c in pending))
            pending = [c for c, ok in zip(pending, results, strict=True) if not ok]
            if not pending:
                return
            if time.monotonic() >= deadline:
                names = ", ".join(c.name for c in pending)
                raise StartupError(f"not ready after {seconds:g} s: {names}")
            await asyncio.sleep(0.2)

    def on_signal(self) -> None:
        """First Ctrl-C/SIGTERM: stop in order. A second one: kill at once."""
        self._signals += 1
        if self._signals == 1:
            self.say("stopping (Ctrl-C again to kill at once)")
            self._stop.set()
        else:
            for proc in self.procs.values():
                if proc.returncode is None:
                    _signal_group(proc.pid, signal.SIGKILL)

    async def stop(self) -> None:
        """SIGTERM every child, SIGKILL those still there after stop_timeout, reap all."""
        self._stopping = True
        live = [p for p in self.procs.values() if p.returncode is None]
        for proc in live:
            _signal_group(proc.pid, signal.SIGTERM)
        try:
            async with asyncio.timeout(self.opts.stop_timeout):
                await asyncio.gather(*(p.wait() for p in live))
        except TimeoutError:
            for name, proc in self.procs.items():
                if proc.returncode is None:
                    self.say(f"{name} did not stop in {self.opts.stop_timeout:g} s; killing it")
                    _signal_group(proc.pid, signal.SIGKILL)
            await asyncio.gather(*(p.wait() for p in live))
        # Grandchildren (if any) may hold the pipes open; do not hang on them.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                await asyncio.gather(*self._relays, return_exceptions=True)
        for task in [*self._relays, *self._watchers]:
            task.cancel()
        for name, proc in self.procs.items():
            self.say(f"{name} stopped (status {proc.returncode})")

    def banner(self) -> None:
        """Tell the user where to connect."""
        gateways = [c for c in self.children if c.role == "gateway"]
        nodes = len(self.children) - len(gateways)
        self.say(f"ready: {nodes} node(s), {len(gateways)} gateway(s)")
        for child in gateways:
            self.say(f"{child.name} URL: ws://{child.ws}/ws")
        if gateways:
            first = gateways[0].ws
            self.say(f"open: http://{first}/ in a browser")
            self.say(f"try:  wscat -c 'ws://{first}/ws?user=alice'")
            self.say(f"or:   parley chat --url ws://{first}/ws --user alice")
        self.say("Ctrl-C stops everything")

    async def start_prometheus(self) -> None:
        """Start Prometheus through parley.observability.prometheus when it exists.

        An optional extra: whatever goes wrong is reported and the cluster
        keeps running.
        """
        name = "parley.observability.prometheus"
        try:
            available = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            available = False
        if not available:
            self.say(f"--prometheus: unavailable ({name} is missing)")
            return
        module: Any = importlib.import_module(name)
        port = self.opts.prometheus_port
        if port_in_use(f"{HOST}:{port}"):
            self.say(f"--prometheus: port {port} is in use; choose another with --prometheus-port")
            return
        targets = {
            getattr(module, "NODE_JOB", "parley-node"): [
                c.http for c in self.children if c.role == "node"
            ],
            getattr(module, "GATEWAY_JOB", "parley-gateway"): [
                c.http for c in self.children if c.role == "gateway"
            ],
        }
        try:
            proc = await module.start_prometheus(
                Path(self.opts.data_dir) / "prometheus", targets, port
            )
        except Exception as exc:  # an optional extra must never take the cluster down
            self.say(f"--prometheus: could not start Prometheus: {exc}")
            return
        if proc is None:
            self.say("--prometheus: unavailable (no `prometheus` binary; apt install prometheus)")
            return
        self._prometheus = proc
        wait_ready = getattr(module, "wait_ready", None)
        if wait_ready is not None and not await wait_ready(port, 30.0):
            self.say(f"--prometheus: not ready after 30 s; see {self.opts.data_dir}/prometheus")
            return
        self.say(f"Prometheus: http://{HOST}:{port} (pid {proc.pid})")

    async def stop_prometheus(self) -> None:
        """Stop the Prometheus we started, if any (SIGTERM, then SIGKILL)."""
        proc, self._prometheus = self._prometheus, None
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            async with asyncio.timeout(self.opts.stop_timeout):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()

    async def run(self) -> int:
        """Start, wait ready, serve until a signal, stop. Returns the exit status."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.on_signal)
        try:
            try:
                self.check_ports()
                await self.start()
                ready = asyncio.create_task(self.wait_ready(self.opts.ready_timeout))
                stop = asyncio.create_task(self._stop.wait())
                await asyncio.wait({ready, stop}, return_when=asyncio.FIRST_COMPLETED)
                if not ready.done():  # interrupted while starting: a clean stop
                    ready.cancel()
                    return 0
                stop.cancel()
                ready.result()
            except StartupError as exc:
                self.say(f"error: {exc}")
                return 1
            self._up = True
            self.banner()
            if self.opts.prometheus:
                await self.start_prometheus()
            await self._stop.wait()
            # Every child died on its own: that is a failure, not a requested stop.
            return 0 if self._signals else 1
        finally:
            await self.stop_prometheus()
            await self.stop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)


def run_up(opts: UpOptions) -> int:
    """Run `parley up` with `opts` until Ctrl-C/SIGTERM; returns the exit status."""
    try:
        plan(opts)
    except ValueError as exc:
        print(f"parley up: {exc}", file=sys.stderr)
        return 2

    async def main() -> int:
        return await Supervisor(opts).run()

    return asyncio.run(main())


def main(argv: Sequence[str] | None = None) -> int:
    """Run `parley up` alone (for tests and `python -m parley.supervisor`)."""
    parser = argparse.ArgumentParser(prog="parley up")
    add_up_flags(parser)
    return run_up(options_from_args(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
