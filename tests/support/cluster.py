"""A real local Parley cluster for integration and fault tests.

`LocalCluster` runs real `parley node` and `parley gateway` processes
(`sys.executable -m parley ...`) on 127.0.0.1 with free ports and static
discovery. Each process:

* runs in a session of its own (`start_new_session=True`), so signals from
  the test (SIGKILL, SIGSTOP) reach exactly it and a Ctrl-C at the terminal
  does not;
* logs JSON lines (PARLEY_LOG_FORMAT=json) to `log_path(name)` under the
  test's tmp_path; `dump_logs()` shows them when something fails;
* is killed at the end whatever happens: `stop()` from the fixtures, and an
  atexit hook for anything a crashed test left behind.

Ports and data directories are fixed per process for the cluster's whole
life, so `restart_node` brings a node back where its peers expect it, with
its data.

Typical use (fixtures in tests/conftest.py do this for you):

    cluster = LocalCluster(tmp_path, nodes=3, gateways=1)
    await cluster.start()
    try:
        client = await ChatClient.connect(cluster.gateway_url(), "alice")
        ...
        cluster.kill_node("node-1")
        await cluster.restart_node("node-1")
    finally:
        await cluster.stop()
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import dataclasses
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from parley.config import format_nodes
from parley.supervisor import grpc_serving, http_ready

HOST = "127.0.0.1"
"""Tests use loopback only."""

STOP_TIMEOUT = 10.0
"""Seconds between SIGTERM and SIGKILL in stop(); longer than the drain time we pass."""

START_ATTEMPTS = 3
"""start() tries again with fresh ports when one it picked was taken meanwhile."""

_BIND_FAILURES = ("address already in use", "failed to bind", "errno 98")
"""How gRPC and asyncio servers say a port was taken, in lower case."""

_LIVE: set[LocalCluster] = set()
"""Clusters with processes that may still run, for the atexit safety net."""


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports that were free on 127.0.0.1 a moment ago.

    All sockets stay open until every port is chosen, so the kernel cannot
    hand the same port out twice within one call.
    """
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((HOST, 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port_block(count: int, low: int = 20000, high: int = 60000) -> int:
    """The first of `count` consecutive free ports, for tools that take a base port.

    Raises:
        RuntimeError: when no free block is found after many tries.
    """
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(low, high - count)
        if all(port_is_free(base + i) for i in range(count)):
            return base
    raise RuntimeError(f"no {count} consecutive free ports in {low}-{high}")


def port_is_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:`port` (SO_REUSEADDR, like servers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a cluster process.

    Inherited PARLEY_* variables are dropped so a developer's shell (say a
    PARLEY_JWT_SECRET) cannot change what a test runs; `extra` is applied last.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    env.update(PARLEY_LOG_FORMAT="json", PYTHONUNBUFFERED="1")
    env.update(extra or {})
    return env


@dataclasses.dataclass(slots=True)
class Proc:
    """One process of the cluster: how to start it and where it is."""

    name: str
    role: str  # "node" | "gateway"
    argv: list[str]
    log_path: Path
    http: str
    grpc: str = ""
    ws: str = ""
    popen: subprocess.Popen[bytes] | None = None
    log_file: IO[bytes] | None = None
    paused: bool = False

    @property
    def running(self) -> bool:
        """True while the process has been started and has not exited."""
        return self.popen is not None and self.popen.poll() is None


Probe = Callable[[str, str], Awaitable[bool]]
"""A readiness probe: (role, address) -> ready? Address is gRPC for nodes, HTTP for gateways."""


class ClusterError(RuntimeError):
    """The cluster could not start or a process did not come back; includes log tails."""


class LocalCluster:
    """Real node and gateway processes on 127.0.0.1; see the module docstring."""

    def __init__(
        self,
        tmp_path: Path,
        nodes: int = 3,
        gateways: int = 1,
        replicas: int = 3,
        store: str = "memory",
        extra_env: Mapping[str, str] | None = None,
        jwt_secret: str = "",
        node_args: Sequence[str] = (),
        gateway_args: Sequence[str] = (),
        ready_timeout: float = 30.0,
        hosts: Mapping[str, str] | None = None,
        prefixes: Mapping[str, Sequence[str]] | None = None,
        probe: Probe | None = None,
    ) -> None:
        """Plan the processes; nothing starts until start().

        Args:
            tmp_path: where logs (tmp_path/logs) and node data (tmp_path/data) go.
            nodes: number of nodes, named node-0, node-1, ...
            gateways: number of gateways, named gateway-0, ...
            replicas: replicas per room (--replicas).
            store: "memory" or "sqlite" (sqlite survives restart_node).
            extra_env: extra environment for every process.
            jwt_secret: when set, gateways require ?token=JWT.
            node_args: extra flags for every node; they override ours.
            gateway_args: extra flags for every gateway; they override ours.
            ready_timeout: seconds start() and restarts wait for readiness.
            hosts: per process name, the address it listens on instead of
                127.0.0.1 (e.g. its network namespace's address).
            prefixes: per process name, a command prefix (e.g.
                `["ip", "netns", "exec", NS]`); the prefix must exec the
                program in place, so signals still reach it.
            probe: how to ask whether a process is ready, for processes the
                test cannot reach directly (in a namespace); by default the
                test asks itself (gRPC health for nodes, /readyz for gateways).
        """
        self.tmp_path = Path(tmp_path)
        self.replicas = replicas
        self.store = store
        self.jwt_secret = jwt_secret
        self.ready_timeout = ready_timeout
        self.env = child_env(extra_env)
        self.probe = probe
        self._hosts = dict(hosts or {})
        self._prefixes = {name: list(prefix) for name, prefix in (prefixes or {}).items()}
        self._node_args = list(node_args)
        self._gateway_args = list(gateway_args)
        self.node_ids: list[str] = [f"node-{i}" for i in range(nodes)]
        self.gateway_names: list[str] = [f"gateway-{i}" for i in range(gateways)]
        (self.tmp_path / "logs").mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, Proc] = {}
        self._plan()

    def _plan(self) -> None:
        """Choose free ports and build every process's command line.

        Called again by start() when a port it chose was taken meanwhile.
        """
        nodes, gateways = len(self.node_ids), len(self.gateway_names)
        store, replicas, jwt_secret = self.store, self.replicas, self.jwt_secret
        node_args, gateway_args = self._node_args, self._gateway_args
        host_of, prefix_of = self._hosts, self._prefixes
        ports = free_ports(2 * nodes + 2 * gateways)
        members = {
            nid: f"{host_of.get(nid, HOST)}:{ports[i]}" for i, nid in enumerate(self.node_ids)
        }
        self.nodes_spec = format_nodes(members)
        python = [sys.executable, "-m", "parley"]
        for i, nid in enumerate(self.node_ids):
            http = f"{host_of.get(nid, HOST)}:{ports[nodes + i]}"
            data_dir = self.tmp_path / "data" / nid
            data_dir.mkdir(parents=True, exist_ok=True)
            argv = [
                *prefix_of.get(nid, []), *python, "node",
                "--id", nid,
                "--grpc", members[nid],
                "--http", http,
                "--nodes", self.nodes_spec,
                "--data-dir", str(data_dir),
                "--store", store,
                "--replicas", str(replicas),
                "--discovery", "static",
                "--drain-seconds", "1",
                *node_args,
            ]  # fmt: skip
            self.procs[nid] = Proc(nid, "node", argv, self.log_path(nid), http, grpc=members[nid])
        for i, name in enumerate(self.gateway_names):
            host = host_of.get(name, HOST)
            ws = f"{host}:{ports[2 * nodes + i]}"
            http = f"{host}:{ports[2 * nodes + gateways + i]}"
            argv = [
                *prefix_of.get(name, []), *python, "gateway",
                "--id", name,
                "--ws", ws,
                "--http", http,
                "--nodes", self.nodes_spec,
                "--replicas", str(replicas),
                "--discovery", "static",
                "--drain-seconds", "1",
                *(["--jwt-secret", jwt_secret] if jwt_secret else ["--auth", "off"]),
                *gateway_args,
            ]  # fmt: skip
            self.procs[name] = Proc(name, "gateway", argv, self.log_path(name), http, ws=ws)

    # -- addresses ---------------------------------------------------------

    def log_path(self, name: str) -> Path:
        """The log file of process `name` (node id or gateway name)."""
        return self.tmp_path / "logs" / f"{name}.log"

    def node_addr(self, node_id: str) -> str:
        """The gRPC address "127.0.0.1:port" of `node_id`."""
        return self.procs[node_id].grpc

    def node_http(self, node_id: str) -> str:
        """The HTTP (/metrics) address "127.0.0.1:port" of `node_id`."""
        return self.procs[node_id].http

    def gateway_url(self, i: int = 0) -> str:
        """The WebSocket URL "ws://127.0.0.1:port/ws" of gateway `i`."""
        return f"ws://{self.procs[self.gateway_names[i]].ws}/ws"

    def gateway_ws(self, i: int = 0) -> str:
        """The WebSocket address "127.0.0.1:port" of gateway `i`."""
        return self.procs[self.gateway_names[i]].ws

    def gateway_http(self, i: int = 0) -> str:
        """The HTTP (/metrics, /readyz) address "127.0.0.1:port" of gateway `i`."""
        return self.procs[self.gateway_names[i]].http

    def pid(self, name: str) -> int:
        """The pid of process `name`, which must have been started."""
        popen = self.procs[name].popen
        if popen is None:
            raise ClusterError(f"{name} was never started")
        return popen.pid

    def is_running(self, name: str) -> bool:
        """True while process `name` runs (a paused one counts as running)."""
        return self.procs[name].running

    # -- lifecycle -----------------------------------------------------------

    def _spawn(self, proc: Proc) -> None:
        """Start `proc`, appending to its log (a restart keeps the earlier output)."""
        if proc.log_file is not None:
            proc.log_file.close()
        proc.log_file = open(proc.log_path, "ab")  # noqa: SIM115 - closed in _reap/stop
        proc.log_file.write(f"=== {time.strftime('%H:%M:%S')} start {proc.argv!r}\n".encode())
        proc.log_file.flush()
        proc.popen = subprocess.Popen(
            proc.argv,
            stdin=subprocess.DEVNULL,
            stdout=proc.log_file,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
        )
        proc.paused = False
        _LIVE.add(self)

    async def start(self) -> None:
        """Start every process and wait until all are ready.

        Raises:
            ClusterError: when a process exits early or is not ready in time;
                the message carries the log tails. Call stop() afterwards
                either way (the fixtures do).
        """
        for attempt in range(1, START_ATTEMPTS + 1):
            for name in [*self.node_ids, *self.gateway_names]:
                self._spawn(self.procs[name])
            try:
                await self._wait_all_ready()
                return
            except ClusterError:
                # A port chosen by free_ports() can be taken by someone else
                # (another test run on this machine, an outgoing connection)
                # before our process binds it. Only that is worth a retry.
                if attempt == START_ATTEMPTS or not self._lost_a_port():
                    raise
            await self.stop()
            self._plan()

    async def start_only(self, names: Sequence[str], timeout: float | None = None) -> None:
        """Start just these processes (the rest stay down until started) and
        wait until they are ready: for clusters that grow while the test runs."""
        for name in names:
            self._spawn(self.procs[name])
        await asyncio.gather(*(self._wait_ready(name, timeout) for name in names))

    async def _wait_all_ready(self) -> None:
        """Wait for every process; on the first failure cancel the other waits and raise it."""
        tasks = [
            *(asyncio.create_task(self.wait_node_healthy(nid)) for nid in self.node_ids),
            *(
                asyncio.create_task(self.wait_gateway_ready(i))
                for i in range(len(self.gateway_names))
            ),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()  # raises the first failure
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _lost_a_port(self) -> bool:
        """True when a process exited because its address was already in use."""
        for name, proc in self.procs.items():
            if proc.running:
                continue
            try:
                text = self.log_path(name).read_text(errors="replace")
            except FileNotFoundError:
                continue
            last_run = text.rsplit("=== ", 1)[-1].lower()
            if any(sign in last_run for sign in _BIND_FAILURES):
                return True
        return False

    async def _wait_ready(self, name: str, timeout: float | None) -> None:
        """Poll `name`'s readiness until it is ready, it exits, or the deadline passes."""
        proc = self.procs[name]
        limit = self.ready_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        while True:
            if proc.popen is None or proc.popen.poll() is not None:
                code = None if proc.popen is None else proc.popen.returncode
                raise ClusterError(
                    f"{name} is not running (exit status {code})\n{self.dump_logs([name])}"
                )
            if self.probe is not None:
                ok = await self.probe(proc.role, proc.grpc if proc.role == "node" else proc.http)
            elif proc.role == "node":
                ok = await grpc_serving(proc.grpc, seconds=1.0)
            else:
                ok = await http_ready(proc.http, seconds=1.0)
            if ok:
                return
            if time.monotonic() >= deadline:
                raise ClusterError(f"{name} not ready after {limit:g} s\n{self.dump_logs()}")
            await asyncio.sleep(0.05)

    async def wait_node_healthy(self, node_id: str, timeout: float | None = None) -> None:
        """Wait until `node_id`'s gRPC health says SERVING.

        Raises:
            ClusterError: when it exits or the deadline passes.
        """
        await self._wait_ready(node_id, timeout)

    async def wait_gateway_ready(self, i: int = 0, timeout: float | None = None) -> None:
        """Wait until gateway `i`'s /readyz answers 200.

        Raises:
            ClusterError: when it exits or the deadline passes.
        """
        await self._wait_ready(self.gateway_names[i], timeout)

    def _signal(self, name: str, sig: int) -> None:
        """Send `sig` to process `name`'s group; a process already gone is fine."""
        proc = self.procs[name]
        if proc.popen is None or proc.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.popen.pid, sig)

    def _reap(self, name: str, timeout: float = 10.0) -> None:
        """Wait (blocking, briefly) for a process we just SIGKILLed, so its ports free up."""
        proc = self.procs[name]
        if proc.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout)
        if proc.log_file is not None:
            proc.log_file.close()
            proc.log_file = None

    def kill_node(self, node_id: str, sig: int = signal.SIGKILL) -> None:
        """Send `sig` (default SIGKILL) to `node_id`; after SIGKILL it is reaped before return."""
        self._kill(node_id, sig)

    def kill_gateway(self, i: int = 0, sig: int = signal.SIGKILL) -> None:
        """Send `sig` (default SIGKILL) to gateway `i`; after SIGKILL it is reaped."""
        self._kill(self.gateway_names[i], sig)

    def _kill(self, name: str, sig: int) -> None:
        """Signal `name`, continuing it first if paused so it can act on the signal."""
        proc = self.procs[name]
        self._signal(name, sig)
        if proc.paused and sig != signal.SIGKILL:
            self._signal(name, signal.SIGCONT)
        proc.paused = False
        if sig == signal.SIGKILL:
            self._reap(name)

    async def wait_exit(self, name: str, timeout: float = STOP_TIMEOUT) -> int:
        """Wait until process `name` has exited and return its exit status.

        Raises:
            TimeoutError: when it still runs after `timeout` seconds.
        """
        popen = self.procs[name].popen
        deadline = time.monotonic() + timeout
        while popen is not None and popen.poll() is None:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{name} still running after {timeout:g} s")
            await asyncio.sleep(0.02)
        self._reap(name)
        return 0 if popen is None else popen.returncode

    def pause_node(self, node_id: str) -> None:
        """Freeze `node_id` with SIGSTOP: its sockets stay open but it answers nothing."""
        self._signal(node_id, signal.SIGSTOP)
        self.procs[node_id].paused = True

    def resume_node(self, node_id: str) -> None:
        """Thaw a node frozen by pause_node (SIGCONT)."""
        self._signal(node_id, signal.SIGCONT)
        self.procs[node_id].paused = False

    async def _restart(self, name: str, timeout: float | None) -> None:
        """Stop `name` if it still runs, start it again on the same ports and data, wait ready."""
        if self.procs[name].running:
            self._kill(name, signal.SIGKILL)
        self._reap(name)
        self._spawn(self.procs[name])
        await self._wait_ready(name, timeout)

    async def restart_node(self, node_id: str, timeout: float | None = None) -> None:
        """Start `node_id` again (SIGKILLing it first if it runs) and wait until SERVING.

        Same ports and data directory: with store="sqlite" it comes back with its log.
        """
        await self._restart(node_id, timeout)

    async def restart_gateway(self, i: int = 0, timeout: float | None = None) -> None:
        """Start gateway `i` again (SIGKILLing it first if it runs) and wait until ready."""
        await self._restart(self.gateway_names[i], timeout)

    async def stop(self) -> None:
        """SIGTERM every process, SIGKILL what remains after STOP_TIMEOUT; nothing is left.

        Safe to call more than once and after a failed start().
        """
        for name in self.procs:
            self._terminate(name)
        deadline = time.monotonic() + STOP_TIMEOUT
        # Popen has no awaitable exit, so poll (briefly) instead of an Event.
        while any(p.running for p in self.procs.values()) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        self._finish()

    def stop_sync(self) -> None:
        """stop() without an event loop, for atexit and other last resorts."""
        for name in self.procs:
            self._terminate(name)
        deadline = time.monotonic() + STOP_TIMEOUT
        while any(p.running for p in self.procs.values()) and time.monotonic() < deadline:
            time.sleep(0.05)
        self._finish()

    def _terminate(self, name: str) -> None:
        """SIGTERM `name` (and SIGCONT, so a paused process can act on it)."""
        self._signal(name, signal.SIGTERM)
        self._signal(name, signal.SIGCONT)
        self.procs[name].paused = False

    def _finish(self) -> None:
        """SIGKILL anything still running, reap everything, close the logs."""
        for name, proc in self.procs.items():
            if proc.running:
                self._signal(name, signal.SIGKILL)
            self._reap(name)
        _LIVE.discard(self)

    async def __aenter__(self) -> LocalCluster:
        """Start the cluster (stopping it again if the start fails)."""
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *_exc: Any) -> None:
        """Stop the cluster."""
        await self.stop()

    # -- diagnostics -----------------------------------------------------------

    def dump_logs(self, names: Sequence[str] | None = None, lines: int = 60) -> str:
        """The last `lines` lines of each process's log, for failure messages."""
        parts: list[str] = []
        for name in names or list(self.procs):
            path = self.log_path(name)
            try:
                text = path.read_text(errors="replace").splitlines()[-lines:]
            except FileNotFoundError:
                text = ["(no log)"]
            parts.append(f"----- {name} ({path}) -----")
            parts.extend(text)
        return "\n".join(parts)


@atexit.register
def _stop_leftovers() -> None:
    """Last resort: kill every process a test left running when pytest exits."""
    for cluster in list(_LIVE):
        cluster.stop_sync()
