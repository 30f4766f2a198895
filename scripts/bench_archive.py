"""Benchmark: the PostgreSQL archive's throughput, and what it costs chat.

Three nodes (sqlite, R = 3) on 127.0.0.1 and a PostgreSQL server started
here (initdb into a temporary directory; Debian's postgresql package). One
room gets MESSAGES messages through the nodes' RoomService in batches of
1,000, in the same run:

* without an archive, then with one (the archiver copying as messages
  arrive): acknowledged messages per second, and the ratio;
* catch-up: the database stopped, MESSAGES published, the database started
  again: archived entries per second until it holds them all.

Each measured twice, alternating. PostgreSQL runs with fsync off here (a
test server), so the archive figures are the archiver's and the driver's,
not a disk's.

    .venv/bin/python scripts/bench_archive.py [--messages 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from support.cluster import LocalCluster
from support.longroom import ROOM, administrator, create, publish
from support.postgres import PostgresServer, binaries


async def archived(dsn: str) -> int:
    try:
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            cursor = await conn.execute(
                "SELECT count(*) FROM parley_entries WHERE room = %s", (ROOM,)
            )
            row = await cursor.fetchone()
            return int(row[0]) if row else 0
    except (psycopg.OperationalError, psycopg.errors.UndefinedTable):
        return 0


async def run(root: Path, total: int, dsn: str | None, pg: PostgresServer | None) -> str:
    args = ["--dedupe-count", "1000"]
    if dsn:
        args += ["--archive-dsn", dsn, "--archive-every", "0.2"]
    cluster = LocalCluster(root, nodes=3, gateways=0, store="sqlite", node_args=args)
    try:
        await cluster.start()
        await create(cluster)
        admin = await administrator(cluster, "node-0")
        started = time.monotonic()
        await publish(cluster, admin, 1, total)
        rate = total / (time.monotonic() - started)
        if dsn is None or pg is None:
            return f"{rate:,.0f}"
        deadline = time.monotonic() + 120
        while await archived(dsn) < total + 1 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        # catch-up after an outage
        with psycopg.connect(dsn) as conn:
            conn.execute("TRUNCATE parley_entries")
        await asyncio.to_thread(pg.stop)
        await publish(cluster, admin, total + 1, total)
        await asyncio.to_thread(pg.start)
        started = time.monotonic()
        while await archived(dsn) < total and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        catch_up = total / (time.monotonic() - started)
        return f"{rate:,.0f} msg/s while archiving; catch-up {catch_up:,.0f} entries/s"
    finally:
        await cluster.stop()


async def main(total: int) -> None:
    with tempfile.TemporaryDirectory(prefix="parley-bench-archive-") as tmp:
        pg = PostgresServer(Path(tmp) / "pg")
        await asyncio.to_thread(pg.init)
        await asyncio.to_thread(pg.start)
        try:
            for attempt in range(2):
                plain = await run(Path(tmp) / f"a{attempt}", total, None, None)
                with psycopg.connect(pg.dsn) as conn:
                    conn.execute("DROP TABLE IF EXISTS parley_entries")
                with_archive = await run(Path(tmp) / f"b{attempt}", total, pg.dsn, pg)
                print(f"{total:,} messages: {plain} msg/s without an archive; "
                      f"{with_archive}", flush=True)  # fmt: skip
        finally:
            await asyncio.to_thread(pg.stop, "immediate")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    if binaries() is None:
        print("archive benchmark skipped: PostgreSQL is not installed (Debian package postgresql)")
        sys.exit(0)
    asyncio.run(main(parser.parse_args().messages))
