"""A room's copies end with it: deleted rooms leave every replica, a node that
comes back after its rooms moved away drops its stale copies (real processes)."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from pathlib import Path

import grpc
import pytest
from parley._generated import room_service_pb2 as pb
from parley._generated import room_service_pb2_grpc as room_grpc
from parley.config import format_nodes
from parley.room.engine import TOMBSTONE
from support.client import ChatClient
from support.cluster import LocalCluster
from support.wait import wait_for

pytestmark = pytest.mark.slow


def _held(cluster: LocalCluster, node_id: str) -> set[str]:
    """Rooms the node has a copy of: entries, or a vote that is not a
    dropped room's tombstone (its last epoch, which is no copy)."""
    path = cluster.tmp_path / "data" / node_id / f"{node_id}.db"
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        held = {r for (r,) in db.execute("SELECT DISTINCT room FROM entries")}
        votes = db.execute(
            "SELECT room FROM hard_state WHERE voted_for NOT LIKE ?", (f"{TOMBSTONE}%",)
        )
        return held | {r for (r,) in votes}


async def test_a_deleted_room_leaves_every_replica_and_its_name_is_free(
    tmp_path: Path,
) -> None:
    cluster = LocalCluster(tmp_path, nodes=3, gateways=1, store="sqlite")
    try:
        await cluster.start()
        async with (
            await ChatClient.connect(cluster.gateway_url(), "alice") as alice,
            await ChatClient.connect(cluster.gateway_url(), "bob") as bob,
        ):
            await alice.create("doomed")
            await bob.join("doomed")
            assert (await alice.send("doomed", "old news", msg_id="m1"))["type"] == "ack"
            for node in cluster.node_ids:
                await wait_for(lambda n=node: "doomed" in _held(cluster, n), 10)
            deleted = await alice.delete("doomed")
            assert deleted["type"] == "deleted", deleted
            assert (await bob.next_of("deleted", room="doomed", timeout=10))["room"] == "doomed"
            for node in cluster.node_ids:
                await wait_for(
                    lambda n=node: "doomed" not in _held(cluster, n),
                    10,
                    message=f"{node} drops the deleted room",
                )
            # the name is free: a new room, with a history of its own
            created = await bob.create("doomed")
            assert (created["type"], created["owner"]) == ("created", "bob"), created
            history = await bob.request({"type": "history", "room": "doomed", "id": "h"})
            assert history["messages"] == [], history
            reply = await bob.send("doomed", "fresh start", msg_id="m1")
            assert reply["type"] == "ack" and reply["seq"] == 1, reply
            refused = await alice.send("doomed", "me again", msg_id="m2")
            assert refused["type"] == "error", refused  # alice is no member of the new room
    finally:
        await cluster.stop()


async def test_a_node_back_after_its_rooms_moved_drops_its_copies(tmp_path: Path) -> None:
    """node-3 is SIGKILLed and removed from the node set; its rooms move to
    the three others. Started again with its old data and its old view of the
    cluster, it never serves those rooms and drops every copy."""
    cluster = LocalCluster(tmp_path, nodes=4, gateways=1, store="sqlite")
    everyone = {nid: cluster.node_addr(nid) for nid in cluster.node_ids}
    rooms = [f"room-{i}" for i in range(16)]
    try:
        await cluster.start()
        async with await ChatClient.connect(cluster.gateway_url(), "alice") as alice:
            for room in rooms:
                await alice.create(room)
                assert (await alice.send(room, "before", msg_id=f"b-{room}"))["type"] == "ack"
        await wait_for(lambda: _held(cluster, "node-3"), 10, message="node-3 holds rooms")
        stale = _held(cluster, "node-3")

        cluster.kill_node("node-3")
        three = {nid: everyone[nid] for nid in cluster.node_ids[:3]}
        for name in ["node-0", "node-1", "node-2", "gateway-0"]:
            cluster.procs[name].argv += ["--nodes", format_nodes(three)]  # the last one wins
            await cluster._restart(name, None)
        for node in cluster.node_ids[:3]:  # three nodes, three replicas: all rooms each
            await wait_for(
                lambda n=node: _held(cluster, n) == set(rooms),
                60,
                interval=0.25,
                message=f"{node} holds every room",
            )

        await cluster.restart_node("node-3")  # its old data, its old node list

        async def serves(room: str) -> bool:
            async with grpc.aio.insecure_channel(everyone["node-3"]) as channel:
                stub = room_grpc.RoomServiceStub(channel)
                try:
                    await stub.History(pb.HistoryRequest(room=room, limit=1), timeout=5)
                except grpc.aio.AioRpcError:
                    return False
                return True

        assert not any(await asyncio.gather(*(serves(r) for r in sorted(stale))))
        await wait_for(
            lambda: not _held(cluster, "node-3"),
            30,
            interval=0.25,
            message="node-3 drops its stale copies",
        )
        async with await ChatClient.connect(cluster.gateway_url(), "alice") as alice:
            for room in rooms:
                reply = await alice.send(room, "after", msg_id=f"a-{room}")
                assert reply["type"] == "ack" and reply["seq"] == 2, (room, reply)
    finally:
        await cluster.stop()
