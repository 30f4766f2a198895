"""One room with a long history, driven through the nodes' RoomService:
publishing in batches, finding its administrator, reading it all back.
Shared by the long-history tests and `scripts/bench_history.py`."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import grpc
from parley._generated import peer_service_pb2 as peer_pb
from parley._generated import peer_service_pb2_grpc as peer_grpc
from parley._generated import room_service_pb2 as pb
from parley._generated import room_service_pb2_grpc as room_grpc

from support.cluster import LocalCluster
from support.wait import wait_for

ROOM = "long"
USER = "alice"
BATCH = 1000


def rss_bytes(pid: int) -> int:
    """A process's resident set size, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def stored(cluster: LocalCluster, node_id: str, room: str = ROOM) -> list[tuple[int, int, int]]:
    """(index, epoch, seq) of every entry of the room in a node's database."""
    path = cluster.tmp_path / "data" / node_id / f"{node_id}.db"
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
        return list(
            db.execute("SELECT idx, epoch, seq FROM entries WHERE room = ? ORDER BY idx", (room,))
        )


async def administrator(cluster: LocalCluster, ask: str) -> str:
    """The room's administrator, as a node that holds it says."""

    async def found() -> str:
        async with grpc.aio.insecure_channel(cluster.node_addr(ask)) as channel:
            answer = await peer_grpc.PeerServiceStub(channel).LocateRoom(
                peer_pb.LocateRoomRequest(room=ROOM), timeout=2
            )
        return answer.administrator if answer.known else ""

    admin = ""

    async def known() -> bool:
        nonlocal admin
        admin = await found()
        return bool(admin)

    await wait_for(known, 20, message="the room has an administrator")
    return admin


async def publish(
    cluster: LocalCluster, node: str, first: int, count: int, room: str = ROOM
) -> None:
    """count messages m<first>.. in batches, each acknowledged with its seq."""
    async with grpc.aio.insecure_channel(cluster.node_addr(node)) as channel:
        stub = room_grpc.RoomServiceStub(channel)
        for start in range(first, first + count, BATCH):
            batch = pb.PublishBatchRequest(
                publishes=[
                    pb.PublishRequest(
                        room=room, user=USER, text=f"message number {i} " + "x" * 40,
                        client_msg_id=f"m{i}",
                    )
                    for i in range(start, min(start + BATCH, first + count))
                ]
            )  # fmt: skip
            response = await stub.PublishBatch(batch, timeout=30)
            errors = [r.error_message for r in response.results if r.error_code]
            assert not errors, errors[:3]


async def read_all(cluster: LocalCluster, node: str) -> list[int]:
    """Every visible seq of the room, streamed from seq 0 (Subscribe's backlog)."""
    seqs: list[int] = []
    async with grpc.aio.insecure_channel(cluster.node_addr(node)) as channel:
        stub = room_grpc.RoomServiceStub(channel)
        (last,) = [
            r.last_seq
            for r in (await stub.ListRooms(pb.ListRoomsRequest(), timeout=10)).rooms
            if r.room == ROOM
        ]
        stream = stub.Subscribe(pb.SubscribeRequest(room=ROOM, from_seq=0), timeout=120)
        async for response in stream:
            seqs.extend(e.seq for e in response.entries)
            if seqs and seqs[-1] >= last:
                stream.cancel()
                break
    return seqs


async def create(cluster: LocalCluster, room: str = ROOM) -> int:
    """Create the room through node-0; returns the create entry's seq."""
    async with grpc.aio.insecure_channel(cluster.node_addr("node-0")) as channel:
        created = await room_grpc.RoomServiceStub(channel).CreateRoom(
            pb.CreateRoomRequest(room=room, user=USER), timeout=10
        )
    return created.seq
