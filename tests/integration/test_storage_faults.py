"""Storage faults on real processes: a disk that fills up under a node.

The node's data directory is a small tmpfs the test mounts and fills. The
node must stop acknowledging (it never acks what it could not persist),
answer health NOT_SERVING so its rooms fail over, say why in its log and
metrics, and resume once the disk has room: nothing acknowledged is lost,
every replica ends with the same entries.
"""

from __future__ import annotations

import asyncio
import sqlite3
import urllib.request
from contextlib import closing
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support.client import ChatClient
from support.cluster import LocalCluster
from support.smallfs import SmallFilesystem
from support.wait import wait_for

pytestmark = pytest.mark.slow

ROOMS = [f"disk-{i}" for i in range(6)]


def metric(cluster: LocalCluster, node: str, name: str) -> float | None:
    url = f"http://{cluster.node_http(node)}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return None


async def health(cluster: LocalCluster, node: str) -> int:
    async with grpc.aio.insecure_channel(cluster.node_addr(node)) as channel:
        answer = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=2
        )
    return int(answer.status)


def stored(cluster: LocalCluster, node: str, room: str) -> list[tuple[int, int, int]]:
    path = cluster.tmp_path / "data" / node / f"{node}.db"
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
        return list(
            db.execute("SELECT idx, epoch, seq FROM entries WHERE room = ? ORDER BY idx", (room,))
        )


async def test_a_node_whose_disk_fills_up_stops_acking_and_resumes(tmp_path: Path) -> None:
    cluster = LocalCluster(
        tmp_path,
        nodes=3,
        gateways=1,
        store="sqlite",
        gateway_args=["--rate-limit", "10000", "--rate-burst", "10000"],
    )
    victim = "node-2"
    with SmallFilesystem(cluster.tmp_path / "data" / victim, 24 * 2**20) as disk:
        try:
            await cluster.start()
            acked: dict[str, set[int]] = {room: set() for room in ROOMS}
            async with await ChatClient.connect(cluster.gateway_url(), "alice") as alice:
                for room in ROOMS:
                    assert (await alice.create(room))["type"] == "created"
                text = "z" * 3000  # big entries: the WAL must grow, so it needs room

                async def send_all(tag: str, count: int) -> None:
                    for i in range(count):
                        for room in ROOMS:
                            reply = await alice.send(room, text, msg_id=f"{tag}-{i}")
                            assert reply["type"] == "ack", reply
                            acked[room].add(reply["seq"])

                await send_all("before", 20)
                disk.fill()
                # the rooms go on (those the victim administered fail over)
                await send_all("full", 60)
                assert metric(cluster, victim, "parley_store_writable") == 0.0
                assert await health(cluster, victim) == health_pb2.HealthCheckResponse.NOT_SERVING
                assert "store full" in cluster.log_path(victim).read_text()
                disk.free()
                await wait_for(
                    lambda: metric(cluster, victim, "parley_store_writable") == 1.0,
                    20,
                    message="the victim writes again",
                )
                await send_all("after", 10)
            for room in ROOMS:
                reference = stored(cluster, "node-0", room)
                seqs = [seq for _, _, seq in reference if seq]
                assert sorted(acked[room]) == sorted(set(seqs)), room
                for node in cluster.node_ids[1:]:
                    await wait_for(
                        lambda n=node, r=room, ref=reference: (
                            stored(cluster, n, r)[: len(ref)] == ref
                        ),
                        20,
                        message=f"{node} holds {room} like node-0",
                    )
            assert await health(cluster, victim) == health_pb2.HealthCheckResponse.SERVING
        finally:
            await cluster.stop()
            await asyncio.sleep(0)


@pytest.mark.parametrize("damage", ["flipped", "truncated"])
async def test_a_damaged_database_is_found_at_start_and_rebuilt(
    tmp_path: Path, damage: str
) -> None:
    """While a node is down its database is damaged: an entry's bytes changed
    (its checksum no longer matches), or the file cut to a third. At start
    the node finds it, never serves or leads from that copy, and the other
    replicas rebuild it; every acknowledged entry is on every replica."""
    cluster = LocalCluster(
        tmp_path,
        nodes=3,
        gateways=1,
        store="sqlite",
        gateway_args=["--rate-limit", "10000", "--rate-burst", "10000"],
    )
    victim = "node-1"
    room = "fragile"
    try:
        await cluster.start()
        async with await ChatClient.connect(cluster.gateway_url(), "alice") as alice:
            assert (await alice.create(room))["type"] == "created"
            for i in range(2500):
                assert (await alice.send(room, f"m{i}", msg_id=f"m{i}"))["type"] == "ack"
            await wait_for(lambda: len(stored(cluster, victim, room)) >= 2501, 20)
            cluster.kill_node(victim)
            path = cluster.tmp_path / "data" / victim / f"{victim}.db"
            if damage == "flipped":
                with closing(sqlite3.connect(path)) as db:
                    db.execute(
                        "UPDATE entries SET text = 'm1' WHERE room = ? AND idx = 1502", (room,)
                    )
                    db.commit()
            else:
                with closing(sqlite3.connect(path)) as db:
                    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                data = path.read_bytes()
                path.write_bytes(data[: len(data) // 3])
            await cluster.restart_node(victim)
            for i in range(2500, 2600):
                assert (await alice.send(room, f"m{i}", msg_id=f"m{i}"))["type"] == "ack"
        reference = stored(cluster, "node-0", room)
        # (an epoch entry repeats the seq before it)
        assert sorted({seq for _, _, seq in reference}) == list(range(2601))
        # compared with node-0's copy as it is then: an epoch entry may still
        # be appended to both after the read above
        await wait_for(
            lambda: stored(cluster, victim, room) == stored(cluster, "node-0", room),
            30,
            message=f"{victim} rebuilt its copy",
        )
        log = cluster.log_path(victim).read_text()
        if damage == "flipped":
            assert "stored copy damaged" in log and "entry 1502 fails its checksum" in log
        else:
            assert list(path.parent.glob(f"{victim}.db.damaged-*")), "the damaged file is kept"
    finally:
        await cluster.stop()
