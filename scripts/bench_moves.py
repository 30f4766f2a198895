"""Benchmark: how long rooms take to follow a scale-up, and the pause each moved room sees.

`make bench` runs this after `python -m parley.bench`. Three nodes and a
gateway discover each other through the Kubernetes API emulator (as in the
integration tests); ROOMS rooms are created and each gets a publisher that
sends its next message as soon as the last one is acknowledged (one in
flight per room, so a room's pause shows as one slow acknowledgement). Then
two nodes join; the script waits until every room is on the group placement
names over five nodes and reports:

* how long that took, and how many rooms moved;
* per moved room, its longest acknowledgement during the move (its pause),
  p50 and p99, next to the p50/p99 acknowledgement before the scale-up.

    .venv/bin/python scripts/bench_moves.py [--rooms 100] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from parley.cluster.placement import replicas_for
from support.client import ChatClient
from support.cluster import LocalCluster
from support.k8s_emulator import K8sEmulator
from support.kube import KubeCluster

CONNECTIONS = 10


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else 0.0


async def publisher(
    client: ChatClient, room: str, acks: list[tuple[str, float, float]], stop: asyncio.Event
) -> None:
    n = 0
    while not stop.is_set():
        n += 1
        sent = time.monotonic()
        reply = await client.send(room, f"m{n}", msg_id=f"{room}-{n}")
        if reply.get("type") == "ack":
            acks.append((room, sent, time.monotonic()))
        else:
            await asyncio.sleep(0.05)  # an error frame: the gateway retries inside; pace


def _move_span(cluster: LocalCluster) -> tuple[float, float]:
    """Wall-clock times of the first "room move started" and the last "room
    move committed" in the nodes' logs."""
    starts, commits = [], []
    for node in cluster.node_ids:
        path = cluster.log_path(node)
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            if '"room move' not in line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            when = datetime.fromisoformat(record["timestamp"]).timestamp()
            if record.get("event") == "room move started":
                starts.append(when)
            elif record.get("event") == "room move committed":
                commits.append(when)
    return min(starts, default=0.0), max(commits, default=0.0)


async def bench(rooms_count: int, concurrency: int) -> None:
    emulator = K8sEmulator()
    await emulator.start()
    with tempfile.TemporaryDirectory(prefix="parley-bench-moves-") as tmp:
        kube = KubeCluster(Path(tmp), emulator, nodes=5, move_concurrency=concurrency)
        cluster = kube.cluster
        cluster.env.update(PARLEY_RATE_LIMIT="1000000", PARLEY_RATE_BURST="1000000")
        first = cluster.node_ids[:3]
        try:
            for node in first:
                kube.announce(node)
            await cluster.start_only([*first, *cluster.gateway_names])
            rooms = [f"bench-{i}" for i in range(rooms_count)]
            clients = [
                await ChatClient.connect(cluster.gateway_url(), f"u{i}") for i in range(CONNECTIONS)
            ]
            owner = {room: clients[i % CONNECTIONS] for i, room in enumerate(rooms)}
            for room in rooms:
                created = await owner[room].create(room)
                assert created["type"] == "created", created
            acks: list[tuple[str, float, float]] = []
            stop = asyncio.Event()
            tasks = [asyncio.create_task(publisher(owner[r], r, acks, stop)) for r in rooms]
            await asyncio.sleep(5.0)
            before = [end - start for _, start, end in acks]

            everyone = set(cluster.node_ids)
            moved = [
                r
                for r in rooms
                if set(replicas_for(r, everyone, 3)) != set(replicas_for(r, set(first), 3))
            ]
            started = time.monotonic()
            wall_start = time.time()
            await kube.scale_up(cluster.node_ids[3:])
            await kube.wait_placement(rooms, "rooms on five nodes")
            done = time.monotonic()
            await asyncio.sleep(1.0)
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            for client in clients:
                await client.close()

            first, last = _move_span(cluster)
            pauses = []
            for room in moved:
                during = [end - s for r, s, end in acks if r == room and started <= end <= done + 1]
                pauses.append(max(during, default=done - started))
            print(
                f"moves: {len(moved)} of {rooms_count} rooms moved to groups with a new node "
                f"in {done - started:.2f} s (move concurrency {concurrency} per node, "
                f"node start-up included)"
            )
            print(
                f"first move started {first - wall_start:.2f} s after the scale-up began, "
                f"last committed {last - wall_start:.2f} s after"
            )
            print(
                f"pause per moved room (its slowest ack during the move): "
                f"p50 {statistics.median(pauses) * 1000:.0f} ms, p99 {pct(pauses, 0.99) * 1000:.0f}"
                f" ms, max {max(pauses) * 1000:.0f} ms; acks before the scale-up: p50 "
                f"{statistics.median(before) * 1000:.0f} ms, p99 {pct(before, 0.99) * 1000:.0f} ms"
                f" ({len(before) / 5.0:.0f} acks/s)"
            )
        finally:
            await cluster.stop()
            await emulator.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    # the emulator's watch tasks are cancelled at its stop: not worth a traceback
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    asyncio.run(bench(args.rooms, args.concurrency))


if __name__ == "__main__":
    main()
