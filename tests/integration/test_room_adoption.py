"""Nodes that do not hold a room never start one: the split of the room-move issue.

Two nodes join at once; requests for rooms whose new placement they form a
majority of reach them first, straight on their gRPC ports, the moment they
are up — before their health watches have seen the old nodes, and while
the old nodes do not know them yet (so nobody moves anything). Neither may
create a copy, vote for one or campaign: each room keeps its one history.
Then thousands of requests for random room names leave no replica, no log
and no election behind on any node.
"""

from __future__ import annotations

import asyncio
import sqlite3
import urllib.request
import uuid
from contextlib import closing
from pathlib import Path

import grpc
import pytest
from parley._generated import room_service_pb2 as pb
from parley._generated import room_service_pb2_grpc as room_grpc
from parley.cluster.placement import replicas_for
from parley.config import format_nodes
from support.client import ChatClient
from support.cluster import LocalCluster

pytestmark = pytest.mark.slow

ROOMS = 40
RANDOM_NAMES = 2000
NEW = {"node-3", "node-4"}


def _metric(cluster: LocalCluster, node_id: str, name: str) -> float:
    url = f"http://{cluster.node_http(node_id)}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


def _rows(cluster: LocalCluster, node_id: str, rooms: set[str]) -> set[str]:
    """Rooms among `rooms` the node has anything stored for (entries or a vote)."""
    path = cluster.tmp_path / "data" / node_id / f"{node_id}.db"
    if not path.exists():
        return set()
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        held = {r for (r,) in db.execute("SELECT DISTINCT room FROM entries")}
        held |= {r for (r,) in db.execute("SELECT room FROM hard_state")}
    return held & rooms


async def _call(addr: str, method: str, request: object) -> str:
    """One RoomService call; its status code name ("OK" on success)."""
    async with grpc.aio.insecure_channel(addr) as channel:
        stub = room_grpc.RoomServiceStub(channel)
        try:
            await getattr(stub, method)(request, timeout=15, wait_for_ready=True)
        except grpc.aio.AioRpcError as err:
            return err.code().name
        return "OK"


async def test_new_nodes_never_start_a_second_copy(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path, nodes=5, gateways=1, store="sqlite")
    everyone = {nid: cluster.node_addr(nid) for nid in cluster.node_ids}
    old = {nid: everyone[nid] for nid in cluster.node_ids[:3]}
    for name in ["node-0", "node-1", "node-2", "gateway-0"]:
        cluster.procs[name].argv += ["--nodes", format_nodes(old)]  # the last --nodes wins
    try:
        await cluster.start_only(["node-0", "node-1", "node-2", "gateway-0"])
        rooms = [f"room-{i}" for i in range(ROOMS)]
        split = [r for r in rooms if set(replicas_for(r, everyone, 3)) >= NEW]
        assert split, "placement over five nodes gives some rooms to both new nodes"
        async with await ChatClient.connect(cluster.gateway_url(), "alice") as alice:
            for room in rooms:
                await alice.create(room)
                reply = await alice.send(room, f"before {room}", msg_id=f"b-{room}")
                assert reply["type"] == "ack", reply

        # both new nodes start, and the requests reach them the moment their
        # ports open: before their health watches have seen anybody
        calls = []
        for room in split:
            for node in sorted(NEW):
                addr = everyone[node]
                calls += [
                    _call(addr, "JoinRoom", pb.JoinRoomRequest(room=room, user="mallory")),
                    _call(
                        addr,
                        "Publish",
                        pb.PublishRequest(room=room, user="alice", text="x", client_msg_id="n"),
                    ),
                    _call(addr, "CreateRoom", pb.CreateRoomRequest(room=room, user="mallory")),
                    _call(addr, "History", pb.HistoryRequest(room=room, limit=10)),
                ]
        _, *codes = await asyncio.gather(cluster.start_only(sorted(NEW)), *calls)
        # never "this room does not exist", never a room created anew
        assert "NOT_FOUND" not in codes, codes
        assert "OK" not in codes[2::4], "a create of an existing room succeeded on a new node"
        for node in sorted(NEW):
            assert _rows(cluster, node, set(split)) == set(), f"{node} stored a copy"
            assert _metric(cluster, node, 'parley_elections_total{outcome="started"}') == 0

        async with await ChatClient.connect(cluster.gateway_url(), "alice") as alice:
            for room in split:
                history = await alice.request({"type": "history", "room": room, "id": room})
                texts = [m.get("text") for m in history.get("messages", [])]
                assert texts[0] == f"before {room}", (room, history)
                reply = await alice.send(room, f"after {room}", msg_id=f"a-{room}")
                assert reply["type"] == "ack", (room, reply)
        for node in cluster.node_ids:
            log = cluster.log_path(node).read_text(errors="replace")
            assert "AssertionError" not in log and "truncating committed" not in log, node

        # random names, at every node: nothing durable, no election anywhere
        started = {
            n: _metric(cluster, n, 'parley_elections_total{outcome="started"}')
            for n in cluster.node_ids
        }
        names = [f"nobody-{uuid.uuid4().hex[:12]}" for _ in range(RANDOM_NAMES)]
        answers = await asyncio.gather(
            *(
                _call(
                    everyone[cluster.node_ids[i % 5]],
                    "JoinRoom" if i % 2 else "Publish",
                    pb.JoinRoomRequest(room=name, user="eve")
                    if i % 2
                    else pb.PublishRequest(room=name, user="eve", text="x", client_msg_id="1"),
                )
                for i, name in enumerate(names)
            )
        )
        assert set(answers) <= {"NOT_FOUND", "FAILED_PRECONDITION", "UNAVAILABLE"}, set(answers)
        assert "NOT_FOUND" in answers
        for node in cluster.node_ids:
            assert _rows(cluster, node, set(names)) == set(), node
            elections = _metric(cluster, node, 'parley_elections_total{outcome="started"}')
            assert elections == started[node], node
    finally:
        await cluster.stop()
