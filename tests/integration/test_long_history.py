"""Rooms with long histories, on real processes: memory that does not grow
with history, restarts that read a snapshot, history read from disk, and a
wiped node rebuilt by snapshot (issue: the log on disk, bounded memory)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import grpc
import pytest
from parley._generated import room_service_pb2 as pb
from parley._generated import room_service_pb2_grpc as room_grpc
from support.cluster import LocalCluster
from support.longroom import (
    BATCH,
    ROOM,
    USER,
    administrator,
    create,
    publish,
    read_all,
    rss_bytes,
    stored,
)
from support.wait import wait_for

pytestmark = pytest.mark.slow


async def test_two_hundred_thousand_messages_in_one_room(tmp_path: Path) -> None:
    """200,000 messages: the administrator's memory stays flat after the
    first thousand, a SIGKILLed administrator restarts from its snapshot and
    serves again, the oldest messages are readable with history, and the
    seqs read back are exactly 1..200,000 (after the create's 0)."""
    total = 200_000
    # a de-duplication window of 1,000 ids: the window is the one per-room
    # structure that grows with traffic (by design, up to its bounds)
    cluster = LocalCluster(tmp_path, nodes=3, store="sqlite", node_args=["--dedupe-count", "1000"])
    try:
        await cluster.start()
        assert await create(cluster) == 0
        admin = await administrator(cluster, "node-0")
        await publish(cluster, admin, 1, BATCH)
        rss_first = rss_bytes(cluster.pid(admin))
        began = time.monotonic()
        await publish(cluster, admin, BATCH + 1, total - BATCH)
        rate = (total - BATCH) / (time.monotonic() - began)
        rss_end = rss_bytes(cluster.pid(admin))
        growth = rss_end - rss_first
        print(
            f"\n{total} messages: {rate:.0f} msg/s; administrator RSS "
            f"{rss_first / 2**20:.1f} MiB after {BATCH}, {rss_end / 2**20:.1f} MiB after "
            f"{total}: {growth / (total - BATCH):.1f} bytes per stored message"
        )
        # memory does not follow history: 200k messages (~20 MB of them) in
        # the log, a few MB of allocator noise at most in memory
        assert growth < 8 * 2**20, f"RSS grew {growth / 2**20:.1f} MiB"

        cluster.kill_node(admin)
        started = time.monotonic()
        await cluster.restart_node(admin)
        restart_s = time.monotonic() - started
        rss_restarted = rss_bytes(cluster.pid(admin))
        print(
            f"restart with {total} messages stored: ready in {restart_s:.2f} s, "
            f"RSS {rss_restarted / 2**20:.1f} MiB"
        )
        new_admin = await administrator(cluster, admin)
        # the first messages, long out of memory, from the store
        async with grpc.aio.insecure_channel(cluster.node_addr(new_admin)) as channel:
            history = await room_grpc.RoomServiceStub(channel).History(
                pb.HistoryRequest(room=ROOM, user=USER, before_seq=11, limit=10), timeout=10
            )
        assert [e.seq for e in history.entries] == list(range(1, 11))
        assert history.entries[0].text.startswith("message number 1 ")
        seqs = await read_all(cluster, new_admin)
        assert seqs == list(range(total + 1))
        # and the restarted node holds it all, exactly as the others do
        await wait_for(lambda: len(stored(cluster, admin)) == len(stored(cluster, new_admin)), 30)
        assert stored(cluster, admin) == stored(cluster, new_admin)
    finally:
        await cluster.stop()


async def test_a_wiped_follower_rejoins_by_snapshot(tmp_path: Path) -> None:
    """A follower whose database is deleted (a lost volume) restarts empty
    and is brought up to date by one snapshot with the history copied in
    chunks, not by appends from index 1; every replica ends with the same
    entries, and the room keeps serving throughout."""
    cluster = LocalCluster(
        tmp_path,
        nodes=3,
        store="sqlite",
        node_args=["--log-tail", "100", "--snapshot-every", "500"],
    )
    try:
        await cluster.start()
        await create(cluster)
        admin = await administrator(cluster, "node-0")
        await publish(cluster, admin, 1, 5000)
        follower = next(n for n in cluster.node_ids if n != admin)
        await wait_for(lambda: len(stored(cluster, follower)) >= 5001, 20)
        cluster.kill_node(follower)
        for path in (cluster.tmp_path / "data" / follower).glob(f"{follower}.db*"):
            path.unlink()
        publishing = asyncio.create_task(publish(cluster, admin, 5001, 2000))
        await cluster.restart_node(follower)
        await publishing
        expected = stored(cluster, admin)
        await wait_for(
            lambda: stored(cluster, follower) == expected,
            30,
            message=f"{follower} holds the whole history again",
        )
        assert [seq for _, _, seq in expected if seq] == list(range(1, 7001))
        log = cluster.log_path(follower).read_text()
        assert "snapshot installed" in log
        sent = [
            json.loads(line)
            for line in cluster.log_path(admin).read_text().splitlines()
            if '"snapshot sent"' in line
        ]
        # the copy from index 1, in one transfer of history chunks
        assert any(e["peer"] == follower and e["history"] >= 5000 for e in sent), sent
    finally:
        await cluster.stop()
