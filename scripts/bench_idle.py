"""Benchmark: what idle rooms cost, and how fast rooms are created.

Three nodes (sqlite, R = 3) on 127.0.0.1; ROOMS rooms are created straight
through the nodes' RoomService (CONCURRENCY creates in flight), then left
alone. Reported: creations per second; after the rooms have gone quiet, each
node's CPU over a 10 s window (from /proc) and its resident memory per room
(RSS with the rooms minus RSS before them); then the node administering the
most rooms is SIGKILLed (it holds a copy of every room): how long until
every one of its rooms is served by another node.

    .venv/bin/python scripts/bench_idle.py [--rooms 1000 10000 50000] [--concurrency 128]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from parley._generated import room_service_pb2 as pb
from parley._generated import room_service_pb2_grpc as room_grpc
from support.cluster import LocalCluster

TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def rss_bytes(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE


async def create_all(cluster: LocalCluster, rooms: list[str], concurrency: int) -> float:
    channels = {n: grpc.aio.insecure_channel(cluster.node_addr(n)) for n in cluster.node_ids}
    stubs = {n: room_grpc.RoomServiceStub(c) for n, c in channels.items()}
    queue = list(reversed(rooms))

    async def worker() -> None:
        while queue:
            room = queue.pop()
            node = cluster.node_ids[0]
            for _ in range(10):
                try:
                    await stubs[node].CreateRoom(
                        pb.CreateRoomRequest(room=room, user="owner"), timeout=10
                    )
                    break
                except grpc.aio.AioRpcError as err:
                    hint = dict(err.trailing_metadata() or ()).get("parley-administrator", "")
                    node = hint if hint in stubs else cluster.node_ids[(rooms.index(room)) % 3]

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.monotonic() - started
    for channel in channels.values():
        await channel.close()
    return seconds


async def bench(count: int, concurrency: int) -> None:
    with tempfile.TemporaryDirectory(prefix="parley-bench-idle-") as tmp:
        cluster = LocalCluster(Path(tmp), nodes=3, gateways=0, store="sqlite")
        try:
            await cluster.start()
            pids = {n: cluster.pid(n) for n in cluster.node_ids}
            await asyncio.sleep(2.0)
            before = {n: rss_bytes(p) for n, p in pids.items()}
            rooms = [f"idle-{i}" for i in range(count)]
            seconds = await create_all(cluster, rooms, concurrency)
            await asyncio.sleep(5.0)  # let every room go quiet
            cpu0 = {n: cpu_seconds(p) for n, p in pids.items()}
            await asyncio.sleep(10.0)
            cpu = {n: (cpu_seconds(p) - cpu0[n]) / 10.0 for n, p in pids.items()}
            per_room = {n: (rss_bytes(p) - before[n]) / count for n, p in pids.items()}
            print(
                f"{count:,} rooms: created at {count / seconds:,.0f}/s; idle CPU per node "
                + ", ".join(f"{cpu[n] * 100:.1f} %" for n in cluster.node_ids)
                + "; memory per room "
                + ", ".join(f"{per_room[n] / 1024:.2f} KB" for n in cluster.node_ids),
                flush=True,
            )
            victim, lost, failover = await failover_of_busiest(cluster, count)
            print(
                f"{count:,} rooms: SIGKILL {victim} ({lost:,} rooms administered): "
                + (
                    f"all served again in {failover:.2f} s"
                    if failover is not None
                    else f"not all served again within {FAILOVER_LIMIT:.0f} s"
                ),
                flush=True,
            )
        finally:
            await cluster.stop()


FAILOVER_LIMIT = 600.0


async def administered(cluster: LocalCluster, node: str) -> set[str] | None:
    """The rooms the node serves, or None when it is too busy to say."""
    async with grpc.aio.insecure_channel(cluster.node_addr(node)) as channel:
        try:
            rooms = await room_grpc.RoomServiceStub(channel).ListRooms(
                pb.ListRoomsRequest(), timeout=30
            )
        except grpc.aio.AioRpcError:
            return None
    return {r.room for r in rooms.rooms}


async def failover_of_busiest(cluster: LocalCluster, count: int) -> tuple[str, int, float | None]:
    """SIGKILL the node serving the most rooms; seconds until the others serve
    them all (None: not within FAILOVER_LIMIT)."""
    served = {n: await administered(cluster, n) or set() for n in cluster.node_ids}
    victim = max(served, key=lambda n: len(served[n]))
    others = [n for n in cluster.node_ids if n != victim]
    cluster.kill_node(victim)
    killed = time.monotonic()
    while time.monotonic() - killed < FAILOVER_LIMIT:
        now_served: set[str] = set()
        for node in others:
            now_served |= await administered(cluster, node) or set()
        if len(now_served) >= count:
            return victim, len(served[victim]), time.monotonic() - killed
        await asyncio.sleep(0.05)
    return victim, len(served[victim]), None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, nargs="*", default=[1000, 10000, 50000])
    parser.add_argument("--concurrency", type=int, default=128)
    args = parser.parse_args()
    for count in args.rooms:
        asyncio.run(bench(count, args.concurrency))


if __name__ == "__main__":
    main()
