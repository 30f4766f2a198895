"""Benchmark: a room with a long history: node memory and restart time.

Three nodes (sqlite, R = 3) on 127.0.0.1; one room gets MESSAGES messages
through the nodes' RoomService (batches of 1,000). Reported per size: the
publish rate, the administrator's RSS after the first 1,000 messages and at
the end (bytes per stored message), then the administrator is SIGKILLed and
started again: seconds until it is ready (it loads the room's snapshot and
the entries after it, not the history) and its RSS then; and how long the
room had no administrator after the kill (failover).

A de-duplication window of 1,000 ids keeps the one structure that grows
with traffic (by design, up to its bounds) out of the comparison.

    .venv/bin/python scripts/bench_history.py [--messages 10000 100000 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from support.cluster import LocalCluster
from support.longroom import BATCH, administrator, create, publish, rss_bytes


async def bench(total: int) -> None:
    with tempfile.TemporaryDirectory(prefix="parley-bench-history-") as tmp:
        cluster = LocalCluster(
            Path(tmp), nodes=3, gateways=0, store="sqlite", node_args=["--dedupe-count", "1000"]
        )
        try:
            await cluster.start()
            await create(cluster)
            admin = await administrator(cluster, "node-0")
            await publish(cluster, admin, 1, BATCH)
            first = rss_bytes(cluster.pid(admin))
            started = time.monotonic()
            await publish(cluster, admin, BATCH + 1, total - BATCH)
            rate = (total - BATCH) / (time.monotonic() - started)
            end = rss_bytes(cluster.pid(admin))
            survivor = next(n for n in cluster.node_ids if n != admin)
            cluster.kill_node(admin)
            killed = time.monotonic()
            while await administrator(cluster, survivor) == admin:  # noqa: ASYNC110
                await asyncio.sleep(0.01)  # the survivor still names the dead one
            failover = time.monotonic() - killed
            started = time.monotonic()
            await cluster.restart_node(admin)
            restart = time.monotonic() - started
            restarted = rss_bytes(cluster.pid(admin))
            print(
                f"{total:>9,} messages: {rate:,.0f} msg/s; administrator RSS "
                f"{first / 2**20:.1f} MiB at 1k, {end / 2**20:.1f} MiB at the end "
                f"({(end - first) / (total - BATCH):.1f} B per message); after SIGKILL: "
                f"new administrator in {failover:.2f} s, restart ready in {restart:.2f} s "
                f"with RSS {restarted / 2**20:.1f} MiB",
                flush=True,
            )
        finally:
            await cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    args = parser.parse_args()
    for total in args.messages:
        asyncio.run(bench(total))


if __name__ == "__main__":
    main()
