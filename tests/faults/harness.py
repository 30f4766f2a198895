"""The fault suite's scaffolding: a cluster in network namespaces, load, faults, verdict.

`FaultLab` puts every node on a test host (network namespace) of its own and
the gateways plus the load generator (tests/faults/agent.py) on a "client"
host, all on one bridge (support.netns.NetLab). The test process talks only
to the agent, over its stdin/stdout, so every address in use exists only
inside namespaces the test made. Typical scenario:

    await lab.start(nodes=3, gateways=1)
    await lab.start_load()
    await lab.wait_acks(count=50)
    admin = (await lab.administrators())["r0"]
    lab.mark("kill admin", rooms=["r0"])
    lab.cluster.kill_node(admin)
    await lab.wait_acks(room="r0", after=lab.faults[-1].t)
    result = await lab.finish()        # checks the invariants, prints a summary
    result.assert_ok()
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from support.checker import HistEntry, History, Report, check, longest_ack_gap, recovery
from support.cluster import LocalCluster
from support.netns import NetLab

AGENT = Path(__file__).with_name("agent.py")
"""The load generator / prober program run on the client host."""

RECOVERY_LIMIT = 10.0
"""Seconds within which a room must accept messages again after a fault (DESIGN §8 (4))."""

REPLICA_TIMEOUT = 15.0
"""Seconds replicas get to catch up with the administrator's log after the load stops."""

_KINDS = {2: "message", 3: "join", 4: "leave"}
"""parley.room.entries.EntryKind values of the entries clients see (create is seq 0)."""

RESULTS: list[str] = []
"""One markdown table row per finished scenario, printed at the end of the session."""


class RecoveryError(AssertionError):
    """A room took too long to accept messages again after a fault (liveness, not safety)."""


class AgentError(RuntimeError):
    """The agent answered a request with an error, or not at all."""


class AgentProc:
    """The agent subprocess and its request/reply channel."""

    def __init__(self, proc: asyncio.subprocess.Process, log_file: IO[bytes]) -> None:
        """Wrap a started agent; use AgentProc.start()."""
        self.proc = proc
        self.log_file = log_file
        self._rids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, prefix: list[str], log_path: Path) -> AgentProc:
        """Start the agent with command prefix `prefix`, its stderr going to `log_path`."""
        log_file = open(log_path, "ab")  # noqa: SIM115, ASYNC230 - closed in close()
        proc = await asyncio.create_subprocess_exec(
            *prefix,
            sys.executable,
            str(AGENT),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log_file,
            start_new_session=True,
            limit=1 << 24,
        )
        return cls(proc, log_file)

    async def _read(self) -> None:
        """Resolve pending requests from reply lines until stdout closes."""
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            reply = json.loads(line)
            future = self._pending.pop(reply.pop("rid"), None)
            if future is not None and not future.done():
                future.set_result(reply)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(AgentError("the agent exited"))

    async def call(self, op: str, timeout: float = 60.0, **args: Any) -> dict[str, Any]:
        """Run `op` on the agent and return its reply.

        Raises:
            AgentError: the agent reported an error, exited, or did not answer in time.
        """
        assert self.proc.stdin is not None
        rid = next(self._rids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        self.proc.stdin.write((json.dumps({"rid": rid, "op": op, **args}) + "\n").encode())
        await self.proc.stdin.drain()
        try:
            reply = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise AgentError(f"no reply to {op} in {timeout:g} s") from None
        finally:
            self._pending.pop(rid, None)
        if not reply.pop("ok"):
            raise AgentError(f"{op}: {reply.get('error')}")
        return reply

    async def probe(self, role: str, address: str) -> bool:
        """LocalCluster's readiness probe, asked from the client host."""
        kind = "grpc" if role == "node" else "http"
        with contextlib.suppress(AgentError):
            return bool((await self.call("probe", timeout=10, kind=kind, addr=address))["ready"])
        return False

    async def close(self) -> None:
        """Close its stdin (it exits), kill it if it lingers, and reap it."""
        if self.proc.stdin is not None:
            with contextlib.suppress(Exception):
                self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        self.log_file.close()


@dataclasses.dataclass
class Fault:
    """A fault injected at monotonic time `t`, affecting `rooms` (None: all rooms)."""

    label: str
    t: float
    rooms: list[str] | None = None
    clients: list[str] | None = None
    """Only these clients' sends count for its recovery (None: everyone's)."""
    bound: bool = True
    """Whether its recovery must be under RECOVERY_LIMIT (False: measured and printed only)."""


@dataclasses.dataclass
class Result:
    """What one scenario's run came to."""

    name: str
    report: Report
    recovery: dict[str, float | None]
    """Fault label -> worst seconds to the first new ack over its rooms (None: never)."""
    bound: set[str]
    """The labels of faults whose recovery must be under the limit."""
    longest_gap: float
    """The longest time any room went without an ack while load ran."""
    history: History
    reconnects: dict[str, int] = dataclasses.field(default_factory=dict)
    """User -> how many times it connected again (to another gateway)."""

    def line(self) -> str:
        """The one-line summary printed for the scenario."""
        rec = ", ".join(
            f"{label}: {'never' if t is None else f'{t:.2f}s'}"
            for label, t in self.recovery.items()
        )
        return (
            f"[{self.name}] {self.report.summary()} sources={len(self.history.histories)} "
            f"longest_ack_gap={self.longest_gap:.2f}s "
            f"recovery=({rec or 'no fault'})"
        )

    def worst_recovery(self) -> float | None:
        """The worst recovery over bound faults (0 when there was none; None if one never)."""
        values = [t for label, t in self.recovery.items() if label in self.bound]
        if any(v is None for v in values):
            return None
        return max((v for v in values if v is not None), default=0.0)

    def assert_ok(self, recovery_limit: float = RECOVERY_LIMIT) -> None:
        """Fail with the findings unless every invariant held and every room recovered in time."""
        assert self.report.ok, self.report.details()
        assert self.report.acked > 0, "nothing was acknowledged"
        for label, seconds in self.recovery.items():
            if label not in self.bound:
                continue
            if seconds is None:
                raise RecoveryError(f"no ack after fault {label!r}")
            if seconds >= recovery_limit:
                raise RecoveryError(f"recovery after {label!r} took {seconds:.2f} s")


class FaultLab:
    """A cluster on namespaced hosts with a load-generating client; see the module docstring."""

    def __init__(self, tmp_path: Path, net: NetLab | None, name: str, nodeid: str = "") -> None:
        """Plan; start() builds the hosts and starts everything.

        Args:
            tmp_path: where logs, data and the recorded history go.
            net: the namespaces to run on (closed by the caller).
            name: the scenario's name in summaries.
            nodeid: the pytest node id, for the command in the results table.
        """
        self.tmp_path = tmp_path
        self.net = net
        self.name = name
        self.nodeid = nodeid
        self.faults: list[Fault] = []
        self.agent: AgentProc | None = None
        self.cluster: LocalCluster | None = None
        self.rooms: list[str] = []
        self.users: list[str] = []
        self.load_started = 0.0
        self.load_stopped = 0.0
        self.store = "memory"
        self.replica_nodes: list[str] | None = None
        """The nodes whose logs must match the history (default: every node;
        a test that retires nodes names the ones left)."""

    async def start(
        self,
        nodes: int = 3,
        gateways: int = 1,
        store: str = "memory",
        rooms: int = 3,
        users: int = 4,
        node_args: Sequence[str] = (),
    ) -> LocalCluster:
        """Make the hosts, start the agent and the cluster, create rooms and join users."""
        assert self.net is not None, "a lab on this host: use start_on()"
        node_ids = [f"node-{i}" for i in range(nodes)]
        gateway_names = [f"gateway-{i}" for i in range(gateways)]
        addrs = self.net.add_hosts([*node_ids, "client"])
        self.agent = await AgentProc.start(self.net.prefix("client"), self.tmp_path / "agent.log")
        hosts = {nid: addrs[nid] for nid in node_ids}
        hosts.update({g: addrs["client"] for g in gateway_names})
        prefixes = {nid: self.net.prefix(nid) for nid in node_ids}
        prefixes.update({g: self.net.prefix("client") for g in gateway_names})
        self.cluster = LocalCluster(
            self.tmp_path / "cluster",
            nodes=nodes,
            gateways=gateways,
            store=store,
            hosts=hosts,
            prefixes=prefixes,
            probe=self.agent.probe,
            node_args=node_args,
        )
        await self.cluster.start()
        await self._setup(store, rooms, users)
        return self.cluster

    async def start_on(
        self, cluster: LocalCluster, store: str = "memory", rooms: int = 3, users: int = 4
    ) -> None:
        """The same lab on this host (127.0.0.1): for a cluster the caller
        started (with `LocalCluster.start_only`, say), the agent runs here."""
        self.cluster = cluster
        self.agent = await AgentProc.start([], self.tmp_path / "agent.log")
        await self._setup(store, rooms, users)

    async def _setup(self, store: str, rooms: int, users: int) -> None:
        assert self.cluster is not None and self.agent is not None
        self.store = store
        self.rooms = [f"r{i}" for i in range(rooms)]
        self.users = [f"u{i}" for i in range(users)]
        await self.agent.call(
            "setup",
            gateways=[self.cluster.gateway_url(i) for i in range(len(self.cluster.gateway_names))],
            rooms=self.rooms,
            users=self.users,
        )

    def _agent(self) -> AgentProc:
        assert self.agent is not None, "start() first"
        return self.agent

    async def start_load(self, rate: float = 6.0, seconds: float = 120.0) -> None:
        """Every user sends `rate` messages/s over the rooms, for at most `seconds`."""
        self.load_started = time.monotonic()
        await self._agent().call("start", rate=rate, seconds=seconds)

    async def stats(self) -> dict[str, Any]:
        """Acks so far and the latest ack time per room."""
        return await self._agent().call("stats")

    async def wait_acks(
        self,
        count: int = 1,
        room: str | None = None,
        after: float | None = None,
        timeout: float = 30.0,
    ) -> None:
        """Wait until `count` acks exist (with `room`: until it has an ack later than `after`)."""

        async def reached() -> bool:
            stats = await self.stats()
            if room is not None:
                return float(stats["last_ack"].get(room, 0.0)) > (after or 0.0)
            if after is not None:
                return any(float(t) > after for t in stats["last_ack"].values())
            return int(stats["acked"]) >= count

        deadline = time.monotonic() + timeout
        while not await reached():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no acks (count={count} room={room} after={after}) in time")
            await asyncio.sleep(0.1)

    async def administrators(self) -> dict[str, str]:
        """Room -> its administrator, from the `rooms` listing."""
        listing = (await self._agent().call("rooms"))["rooms"]
        return {r["room"]: r["administrator"] for r in listing}

    def mark(
        self,
        label: str,
        rooms: list[str] | None = None,
        clients: list[str] | None = None,
        bound: bool = True,
    ) -> Fault:
        """Record that fault `label` is injected now (call right before injecting it).

        Its recovery is measured over `rooms` (default all) and the sends of
        `clients` (default everyone's); with `bound` it must be under
        RECOVERY_LIMIT for assert_ok().
        """
        taken = {f.label for f in self.faults}
        if label in taken:  # labels key the recovery table: make repeats unique
            label = next(
                f"{label} #{n}" for n in itertools.count(2) if f"{label} #{n}" not in taken
            )
        fault = Fault(label, time.monotonic(), rooms, clients, bound)
        self.faults.append(fault)
        print(f"[{self.name}] t={fault.t - self.load_started:6.2f}s fault: {label}")
        return fault

    def elapsed_since(self, fault: Fault) -> float:
        """Seconds since `fault` was injected."""
        return time.monotonic() - fault.t

    async def hold(self, seconds: float) -> None:
        """Let the load run for `seconds` (holding a fault or a steady phase)."""
        await asyncio.sleep(seconds)

    async def finish(self, settle: float = 20.0, drain: float = 30.0) -> Result:
        """Stop the load, drain and read histories, check the invariants, print the summary."""
        agent = self._agent()
        self.load_stopped = time.monotonic()
        await agent.call("stop", timeout=settle + 10, settle=settle)
        out = self.tmp_path / "history.json"
        done = await agent.call("finish", timeout=drain + 120, out=str(out), drain=drain)
        history = History.load(out)
        if self.store == "sqlite":
            # Every replica's own log, read from its database, must match the final history.
            history.histories.update(await self.replica_histories(history))
        report = check(history)
        rec: dict[str, float | None] = {}
        for fault in self.faults:
            times = recovery(history, fault.t, fault.rooms or self.rooms, fault.clients)
            worst = (
                None
                if any(v is None for v in times.values())
                else max((v for v in times.values() if v is not None), default=0.0)
            )
            rec[fault.label] = worst
        gaps = longest_ack_gap(history, self.load_started + 1.0, self.load_stopped, self.rooms)
        result = Result(
            self.name,
            report,
            rec,
            {f.label for f in self.faults if f.bound},
            max(gaps.values(), default=0.0),
            history,
            done["reconnects"],
        )
        print(result.line())
        worst = result.worst_recovery()
        RESULTS.append(
            f"| {self.name} | {report.sent} | {report.acked} | {report.delivered} | "
            f"{'never' if worst is None else f'{worst:.2f}'} | {result.longest_gap:.2f} | "
            f"{report.ack_p99 * 1000:.0f} | "
            f"{'ok' if report.ok else 'FAIL ' + str(report.counts())} | "
            f"`.venv/bin/pytest {self.nodeid} -s` |"
        )
        return result

    def read_replica(self, node_id: str) -> dict[str, list[HistEntry]]:
        """The visible entries (seq >= 1) in `node_id`'s sqlite log, per room, in log order.

        Only rooms the node is a replica of (it holds any entry of, at least
        the create entry) are included: with more nodes than replicas a
        node holds only some rooms.
        """
        assert self.cluster is not None
        path = self.cluster.tmp_path / "data" / node_id / f"{node_id}.db"
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            held = {room for (room,) in db.execute("SELECT DISTINCT room FROM entries")}
            rooms: dict[str, list[HistEntry]] = {r: [] for r in self.rooms if r in held}
            rows = db.execute(
                "SELECT room, seq, kind, user, text FROM entries WHERE kind IN (2, 3, 4) "
                "ORDER BY room, idx"
            ).fetchall()
        for room, seq, kind, user, text in rows:
            if room in rooms:
                rooms[room].append(HistEntry(seq, _KINDS[kind], user, text))
        return rooms

    async def replica_histories(self, history: History) -> dict[str, dict[str, list[HistEntry]]]:
        """Each node's log as a history source "replica-<node>", once it caught up (or timed out).

        Waits up to REPLICA_TIMEOUT for every replica to hold exactly the entries
        of the final history read through the gateway; what it holds then is
        returned either way, so the checker reports any disagreement.
        """
        assert self.cluster is not None
        target = next(iter(history.histories.values()))
        deadline = time.monotonic() + REPLICA_TIMEOUT
        while True:
            nodes = self.replica_nodes or self.cluster.node_ids
            views = {f"replica-{n}": self.read_replica(n) for n in nodes}
            behind = [
                name
                for name, view in views.items()
                if any(entries != target[room] for room, entries in view.items())
            ]
            if not behind or time.monotonic() > deadline:
                if behind:
                    print(
                        f"[{self.name}] replicas still differ after {REPLICA_TIMEOUT:g} s: {behind}"
                    )
                return views
            await asyncio.sleep(0.2)

    async def close(self) -> None:
        """Stop the agent and the cluster; the fixture deletes the NetLab."""
        if self.cluster is not None:
            await self.cluster.stop()
        if self.agent is not None:
            await self.agent.close()
