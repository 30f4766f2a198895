"""Adding a node: old rooms stay where their log says, new rooms use it too."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
from parley.cluster.placement import replicas_for
from parley.config import format_nodes
from support.client import ChatClient
from support.cluster import LocalCluster

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


def _elections_started(cluster: LocalCluster, node_id: str) -> float:
    """parley_elections_total{outcome="started"} of one node."""
    url = f"http://{cluster.node_http(node_id)}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith('parley_elections_total{outcome="started"}'):
            return float(line.split()[-1])
    return 0.0


async def test_a_new_node_takes_new_rooms_and_redirects_old_ones(tmp_path: Path) -> None:
    """After a fourth node joins, every old room keeps its log and its group, and new rooms
    placed on the new node work."""
    cluster = LocalCluster(tmp_path, nodes=4, gateways=1, store="sqlite")
    everyone = {nid: cluster.node_addr(nid) for nid in cluster.node_ids}
    first_three = {nid: everyone[nid] for nid in cluster.node_ids[:3]}
    old_members = ["node-0", "node-1", "node-2", "gateway-0"]
    _use_members(cluster, old_members, first_three)
    try:
        await cluster.start()
        old_rooms = [f"old-{i}" for i in range(ROOMS)]
        # the interesting rooms: placement over four nodes puts node-3 first, so
        # the gateway asks node-3 about rooms it has never held
        moved = [r for r in old_rooms if replicas_for(r, everyone, 3)[0] == "node-3"]
        assert moved, "placement should put some of the rooms on the new node"
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

        async with await ChatClient.connect(cluster.gateway_url(), "alice") as alice:
            for room in old_rooms:
                history = await alice.request({"type": "history", "room": room, "id": room})
                texts = [m.get("text") for m in history.get("messages", [])]
                assert texts == [f"before {room}"], (room, history)
                reply = await alice.send(room, f"after {room}", msg_id=f"a-{room}")
                assert reply["type"] == "ack" and reply["seq"] == 2, (room, reply)
            # node-3 redirected those rooms to their group instead of starting
            # (and campaigning for) empty copies of its own
            assert _elections_started(cluster, "node-3") == 0
            listing = await alice.rooms()
            admins = {r["room"]: r["administrator"] for r in listing["rooms"]}
            for room in moved:
                # the room stayed on the group its create entry recorded
                assert admins[room] != "node-3", (room, admins[room])

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
