"""`make bench`: throughput and latency of Parley on this machine.

Every scenario starts real processes on 127.0.0.1 and drives them over real
WebSockets from this process, so client CPU is part of every figure (as it is
for the bare-websockets baseline measured the same way). Prints one line per
scenario; docs/benchmarks.md records results with this command.

    python -m parley.bench [--seconds 5] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import socket
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TextIO

from prometheus_client import Counter, Histogram
from websockets.asyncio.client import ClientConnection, connect

from parley.observability import metrics
from parley.supervisor import Supervisor, UpOptions

BASELINE_SERVER = """
import asyncio, sys
from websockets.asyncio.server import serve, broadcast
CLIENTS = set()
async def handler(ws):
    CLIENTS.add(ws)
    try:
        async for message in ws:
            broadcast(CLIENTS, message)
    finally:
        CLIENTS.discard(ws)
async def main():
    async with serve(handler, "127.0.0.1", int(sys.argv[1]), max_queue=None) as server:
        print("ready", flush=True)
        await server.serve_forever()
asyncio.run(main())
"""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def free_range(count: int, taken: set[int]) -> int:
    """The first of `count` consecutive ports on 127.0.0.1, each free a
    moment ago and none in `taken` (which gains them). The kernel hands out
    ephemeral ports in sequence, so a range from one free port and a single
    free port asked for next overlapped: a node then failed to bind."""
    while True:
        first = free_port()
        ports = set(range(first, first + count))
        if first + count >= 65000 or ports & taken:
            continue
        try:
            for port in ports:
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        taken |= ports
        return first


def percentile(values: list[float], pct: float) -> float:
    """The pct-th percentile of values (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


@dataclass
class Result:
    """One scenario's numbers."""

    name: str
    seconds: float
    sent: int = 0
    acked: int = 0
    deliveries: int = 0
    ack_latencies: list[float] = field(default_factory=list)
    delivery_latencies: list[float] = field(default_factory=list)
    notes: str = ""

    def line(self) -> str:
        """One human-readable line."""
        parts = [f"{self.name:<28}"]
        if self.acked:
            parts.append(f"{self.acked / self.seconds:>9,.0f} msg/s acked")
        parts.append(f"{self.deliveries / self.seconds:>10,.0f} deliveries/s")
        if self.ack_latencies:
            parts.append(
                f"ack p50 {percentile(self.ack_latencies, 50) * 1000:.2f} ms"
                f" p99 {percentile(self.ack_latencies, 99) * 1000:.2f} ms"
            )
        if self.delivery_latencies:
            parts.append(
                f"delivery p50 {percentile(self.delivery_latencies, 50) * 1000:.2f} ms"
                f" p99 {percentile(self.delivery_latencies, 99) * 1000:.2f} ms"
            )
        if self.notes:
            parts.append(self.notes)
        return "  ".join(parts)


async def _count_deliveries(
    ws: ClientConnection, result: Result, sent_at: dict[str, float], stop: asyncio.Event
) -> None:
    """Count message frames on ws; time those whose text names a send time."""
    with contextlib.suppress(Exception):
        async for raw in ws:
            if stop.is_set():
                return
            if '"message"' not in raw[:40]:
                continue
            result.deliveries += 1
            frame = json.loads(raw) if result.deliveries % 16 == 0 else None
            if frame is not None:
                started = sent_at.get(frame.get("text", ""))
                if started is not None:
                    result.delivery_latencies.append(time.perf_counter() - started)


async def baseline(seconds: float, subscribers: int, window: int) -> Result:
    """Bare websockets broadcast: the ceiling for one server process."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", BASELINE_SERVER, str(port), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        await asyncio.wait_for(proc.stdout.readline(), 10)
        url = f"ws://127.0.0.1:{port}/"
        result = Result(f"baseline broadcast x{subscribers}", seconds)
        stop = asyncio.Event()
        subs = [await connect(url, max_queue=None) for _ in range(subscribers)]
        sender = await connect(url, max_queue=None)
        readers = [asyncio.create_task(_count_deliveries(ws, result, {}, stop)) for ws in subs]
        # the sender hears its own broadcast back: that is its "ack", so it
        # keeps the same window of unacknowledged sends as Parley's senders
        credit = asyncio.Semaphore(window)

        async def echoes() -> None:
            async for _ in sender:
                credit.release()

        drain = asyncio.create_task(echoes())
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            await credit.acquire()
            await sender.send(json.dumps({"type": "message", "text": "x" * 40}))
            result.sent += 1
        result.seconds = seconds
        stop.set()
        for ws in [*subs, sender]:
            await ws.close()
        for task in [*readers, drain]:
            task.cancel()
        return result
    finally:
        proc.kill()
        await proc.wait()


@contextlib.asynccontextmanager
async def local_cluster(
    nodes: int, replicas: int, env: dict[str, str] | None = None
) -> AsyncIterator[tuple[str, list[str]]]:
    """A `parley up` cluster on free ports; yields (ws url, node http addresses)."""
    saved = dict(os.environ)
    os.environ.update(
        {"PARLEY_RATE_LIMIT": "1000000", "PARLEY_RATE_BURST": "1000000", **(env or {})}
    )
    with tempfile.TemporaryDirectory(prefix="parley-bench-") as data:
        taken: set[int] = set()
        opts = UpOptions(
            nodes=nodes,
            gateways=1,
            port=free_range(1, taken),
            data_dir=data,
            store="sqlite",
            replicas=replicas,
            base_grpc=free_range(nodes, taken),
            base_node_http=free_range(nodes, taken),
            base_gateway_http=free_range(1, taken),
        )
        # PARLEY_BENCH_LOG keeps the cluster's log lines for a post-mortem.
        log_path = os.environ.get("PARLEY_BENCH_LOG")
        out: TextIO = open(log_path, "a") if log_path else io.StringIO()  # noqa: SIM115, ASYNC230
        supervisor = Supervisor(opts, out=out)
        try:
            await supervisor.start()
            await supervisor.wait_ready(60)
            https = [c.http for c in supervisor.children if c.role == "node"]
            yield f"ws://127.0.0.1:{opts.port}/ws", https
        finally:
            os.environ.clear()
            os.environ.update(saved)
            await supervisor.stop()
            out.close()


async def _request(ws: ClientConnection, frame: dict[str, object]) -> dict[str, object]:
    await ws.send(json.dumps(frame))
    while True:
        reply: dict[str, object] = json.loads(await ws.recv())
        if reply.get("type") != "presence":
            return reply


async def fanout(
    url: str, name: str, seconds: float, senders: int, subscribers: int, window: int
) -> Result:
    """Senders publish to one room with `window` unacked sends each; every
    subscriber receives everything."""
    room = f"bench-{int(time.time() * 1000) % 10**8}"
    owner = await connect(f"{url}?user=owner", max_queue=None)
    await _request(owner, {"type": "create", "room": room})
    result = Result(name, seconds)
    sent_at: dict[str, float] = {}
    stop = asyncio.Event()
    subs = []
    for i in range(subscribers):
        ws = await connect(f"{url}?user=sub{i}", max_queue=None)
        await _request(ws, {"type": "join", "room": room})
        subs.append(ws)
    readers = [asyncio.create_task(_count_deliveries(ws, result, sent_at, stop)) for ws in subs]
    deadline = time.perf_counter() + seconds

    async def sender(i: int) -> None:
        ws = await connect(f"{url}?user=snd{i}", max_queue=None)
        await _request(ws, {"type": "join", "room": room})
        credit = asyncio.Semaphore(window)
        pending: dict[str, float] = {}

        async def acks() -> None:
            async for raw in ws:
                frame = json.loads(raw)
                if frame.get("type") == "ack":
                    started = pending.pop(str(frame["id"]), None)
                    if started is not None:
                        result.acked += 1
                        result.ack_latencies.append(time.perf_counter() - started)
                    credit.release()
                elif frame.get("type") == "error":
                    pending.pop(str(frame.get("id")), None)
                    credit.release()

        reader = asyncio.create_task(acks())
        n = 0
        while time.perf_counter() < deadline:
            await credit.acquire()
            n += 1
            msg_id = f"{i}-{n}"
            text = f"t{i}-{n}"
            now = time.perf_counter()
            pending[msg_id] = now
            sent_at[text] = now
            await ws.send(json.dumps({"type": "send", "room": room, "text": text, "id": msg_id}))
            result.sent += 1
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                for _ in range(window):
                    await credit.acquire()  # every send answered
        reader.cancel()
        await ws.close()

    started = time.perf_counter()
    await asyncio.gather(*(sender(i) for i in range(senders)))
    result.seconds = time.perf_counter() - started
    stop.set()
    for task in readers:
        task.cancel()
    for ws in [*subs, owner]:
        await ws.close()
    return result


def scrape_histogram(address: str, metric: str) -> tuple[float, float]:
    """(sum, count) of a histogram from a process's /metrics."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
        text = response.read().decode()
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith(f"{metric}_sum "):
            total += float(line.split()[1])
        elif line.startswith(f"{metric}_count "):
            count += float(line.split()[1])
    return total, count


async def commit_latency(seconds: float, replicas: int) -> Result:
    """One sender, one message in flight: the latency of the replicated path."""
    async with local_cluster(3, replicas) as (url, node_https):
        result = await fanout(url, f"sequential R={replicas}", seconds, 1, 1, 1)
        sums = [scrape_histogram(a, "parley_commit_latency_seconds") for a in node_https]
        total = sum(s for s, _ in sums)
        count = sum(c for _, c in sums)
        if count:
            result.notes = f"node commit latency mean {total / count * 1000:.2f} ms"
        return result


def metric_costs(rounds: int = 200_000) -> str:
    """CPU cost of the metric operations every publish performs.

    A publish does about six metric operations end to end (order, commit and
    delivery latency observations; committed, frames-in and frames-out
    counters), so six times the larger cost below is its metrics overhead.
    """
    histogram = Histogram(
        "bench_latency_seconds", "bench", buckets=metrics.LATENCY_BUCKETS, registry=None
    )
    counter = Counter("bench_total", "bench", registry=None)
    started = time.perf_counter()
    for i in range(rounds):
        histogram.observe(i * 1e-6)
    observe = (time.perf_counter() - started) / rounds
    started = time.perf_counter()
    for _ in range(rounds):
        counter.inc()
    inc = (time.perf_counter() - started) / rounds
    per_publish = 3 * observe + 3 * inc
    return (
        f"{'metrics cost':<28}histogram observe {observe * 1e6:.2f} µs, counter inc "
        f"{inc * 1e6:.2f} µs: about {per_publish * 1e6:.1f} µs of CPU per publish"
    )


Scenario = Callable[[float], "asyncio.Future[list[Result]] | object"]


async def run(seconds: float, only: list[str]) -> list[Result]:
    """Run the selected scenarios, printing each line as it completes."""
    results: list[Result] = []

    def show(result: Result) -> None:
        results.append(result)
        print(result.line(), flush=True)

    if not only or "baseline" in only:
        show(await baseline(seconds, 20, 32))
    if not only or "fanout" in only:
        async with local_cluster(3, 3) as (url, _):
            show(await fanout(url, "one room, 1 sender", seconds, 1, 1, 64))
            show(await fanout(url, "one room, 20 subs", seconds, 4, 20, 32))
    if not only or "commit" in only:
        show(await commit_latency(seconds, 1))
        show(await commit_latency(seconds, 3))
    if not only or "metrics" in only:
        print(metric_costs(), flush=True)
    if not only or "tracing" in only:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}"}
        async with local_cluster(3, 3, env) as (url, _):
            result = await fanout(url, "tracing on, 20 subs", seconds, 4, 20, 32)
            result.notes = "(exporting to a closed port: spans are made, then dropped)"
            show(result)
    if len(results) > 1 and results[0].name.startswith("baseline"):
        ratio = max(r.deliveries for r in results[1:]) / max(results[0].deliveries, 1)
        print(f"best replicated fan-out = {ratio:.0%} of the bare broadcast baseline")
    return results


def main(argv: list[str] | None = None) -> None:
    """Entry point of `python -m parley.bench`."""
    parser = argparse.ArgumentParser(prog="parley.bench", description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="per scenario (5)")
    parser.add_argument(
        "--only",
        nargs="*",
        default=[],
        choices=["baseline", "fanout", "commit", "metrics", "tracing"],
        help="scenarios to run (all)",
    )
    args = parser.parse_args(argv)
    print(f"parley bench: {os.cpu_count()} cpus, python {sys.version.split()[0]}")
    results = asyncio.run(run(args.seconds, args.only))
    median = statistics.median(r.deliveries / r.seconds for r in results) if results else 0
    print(f"done: {len(results)} scenarios, median {median:,.0f} deliveries/s")


if __name__ == "__main__":
    main()
