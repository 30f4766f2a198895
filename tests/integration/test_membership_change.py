"""Adding a node: old rooms move to the groups placement names, new rooms use it too.

(Static discovery here, restarting each process with the new node list; the
moves under load with Kubernetes discovery are in test_room_moves.py.)"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from parley.cluster.placement import replicas_for
from parley.config import format_nodes
from support.client import ChatClient
from support.cluster import LocalCluster
from support.wait import wait_for

pytestmark = pytest.mark.slow

ROOMS = 24


def _use_members(cluster: LocalCluster, names: list[str], members: dict[str, str]) -> None:
    """Make each named process discover exactly `members` on its next (re)start."""
    for name in names:
        argv = cluster.procs[name].argv
        while "--nodes" in argv[argv.index("--nodes") + 2 :]:
            # drop an override added earlier (the last --nodes wins)
            last = len(argv) - 1 - argv[::-1].index("--nodes")
            del argv[last : last + 2]
        argv += ["--nodes", format_nodes(members)]


def _held(cluster: LocalCluster, node_id: str) -> set[str]:
    path = cluster.tmp_path / "data" / node_id / f"{node_id}.db"
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return {room for (room,) in db.execute("SELECT DISTINCT room FROM entries")}


async def test_a_new_node_takes_its_share_of_old_and_new_rooms(tmp_path: Path) -> None:
    """After a fourth node joins, the old rooms placement gives it move there
    with their whole log, and new rooms placed on it work."""
    cluster = LocalCluster(tmp_path, nodes=4, gateways=1, store="sqlite")
    everyone = {nid: cluster.node_addr(nid) for nid in cluster.node_ids}
    first_three = {nid: everyone[nid] for nid in cluster.node_ids[:3]}
    old_members = ["node-0", "node-1", "node-2", "gateway-0"]
    _use_members(cluster, old_members, first_three)
    try:
        await cluster.start()
        old_rooms = [f"old-{i}" for i in range(ROOMS)]
        moving = {r for r in old_rooms if "node-3" in replicas_for(r, everyone, 3)}
        assert moving, "placement should put some of the rooms on the new node"
        async with await ChatClient.connect(cluster.gateway_url(), "alice") as alice:
            for room in old_rooms:
                await alice.create(room)
                reply = await alice.send(room, f"before {room}", msg_id=f"b-{room}")
                assert reply["type"] == "ack", reply

        # scale up: everyone learns about node-3, one process at a time
        _use_members(cluster, old_members, everyone)
        for name in old_members:
            if name.startswith("node"):
                await cluster.restart_node(name)
            else:
                await cluster.restart_gateway(0)

        # the rooms placement now gives node-3 move there, the others stay
        await wait_for(
            lambda: _held(cluster, "node-3") == moving, 60, interval=0.25,
            message="node-3 holds its share of the old rooms",
        )  # fmt: skip
        async with await ChatClient.connect(cluster.gateway_url(), "alice") as alice:
            for room in old_rooms:
                history = await alice.request({"type": "history", "room": room, "id": room})
                texts = [m.get("text") for m in history.get("messages", [])]
                assert texts == [f"before {room}"], (room, history)
                reply = await alice.send(room, f"after {room}", msg_id=f"a-{room}")
                assert reply["type"] == "ack" and reply["seq"] == 2, (room, reply)
            for node in cluster.node_ids:
                expected = {r for r in old_rooms if node in replicas_for(r, everyone, 3)}
                await wait_for(
                    lambda n=node, e=expected: _held(cluster, n) == e, 30, interval=0.25,
                    message=f"{node} holds exactly its rooms",
                )  # fmt: skip

            new_rooms = [f"new-{i}" for i in range(ROOMS)]
            for room in new_rooms:
                created = await alice.create(room)
                assert created["type"] == "created", created
                reply = await alice.send(room, "hi", msg_id=f"n-{room}")
                assert reply["type"] == "ack" and reply["seq"] == 1, reply
            listing = await alice.rooms()
            admins = {r["room"]: r["administrator"] for r in listing["rooms"]}
            expected = {r for r in new_rooms if replicas_for(r, everyone, 3)[0] == "node-3"}
            assert expected, "placement should make node-3 first for some new rooms"
            assert {r for r in new_rooms if admins.get(r) == "node-3"} == expected
    finally:
        await cluster.stop()
