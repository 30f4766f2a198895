"""Rooms follow the node set: real processes, discovery through the Kubernetes API emulator.

Every node and the gateway find the nodes through EndpointSlices served by
`support.k8s_emulator` on 127.0.0.1 (one slice per node, since each local
"pod" has a port of its own). Scaling is what Kubernetes does: a new pod's
endpoint appears and the pod starts; a removed pod gets SIGTERM and its
endpoint goes. The fault suite's load generator (`tests/faults/agent.py`)
publishes to every room all along, and its verdict is the fault suite's:
nothing acknowledged lost, no duplicates, one order, seq rising by exactly
1 for every subscriber, every replica's own log equal to the history.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import statistics
import time
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path

import pytest
from faults.harness import FaultLab
from parley.cluster.placement import replicas_for
from support.checker import History, longest_ack_gap
from support.cluster import LocalCluster
from support.k8s_emulator import K8sEmulator
from support.kube import MOVE_TIMEOUT, KubeCluster
from support.wait import wait_for

pytestmark = pytest.mark.slow

GRACE = 3.0
"""--member-grace: seconds a vanished node stays in the placement set."""

ROOMS = 24
RATE = 24.0
"""Messages per second each of the 4 users sends, over all rooms: a room gets
an ack about every quarter second, so a move's pause shows above that."""


@pytest.fixture
async def kube(tmp_path: Path) -> AsyncIterator[tuple[KubeCluster, FaultLab]]:
    emulator = K8sEmulator()
    await emulator.start()
    kube = KubeCluster(tmp_path, emulator, nodes=5, grace=GRACE)
    lab = FaultLab(tmp_path, None, "room moves")
    try:
        yield kube, lab
    finally:
        await lab.close()
        await emulator.stop()


def _moves(cluster: LocalCluster) -> list[dict[str, object]]:
    """Every "room move ..." record in the nodes' logs."""
    found = []
    for node_id in cluster.node_ids:
        path = cluster.log_path(node_id)
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            if '"room move' in line:
                try:
                    found.append({**json.loads(line), "node": node_id})
                except json.JSONDecodeError:
                    continue
    return found


def _held(cluster: LocalCluster, node_id: str) -> set[str]:
    path = cluster.tmp_path / "data" / node_id / f"{node_id}.db"
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return {room for (room,) in db.execute("SELECT DISTINCT room FROM entries")}


def _pauses(history: History, rooms: list[str], since: float, until: float) -> list[float]:
    return sorted(longest_ack_gap(history, since, until, rooms).values())


def _report(label: str, seconds: float, pauses: list[float]) -> str:
    p99 = pauses[min(len(pauses) - 1, int(len(pauses) * 0.99))]
    return (
        f"{label}: rooms on their new groups after {seconds:.1f} s; longest pause without "
        f"an ack per room p50 {statistics.median(pauses):.2f} s, p99 {p99:.2f} s, "
        f"max {pauses[-1]:.2f} s"
    )


async def _three_nodes_under_load(k8s: KubeCluster, lab: FaultLab) -> list[str]:
    """Start node-0..2 and the gateway, create the rooms, start publishing."""
    cluster = k8s.cluster
    first = cluster.node_ids[:3]
    for node_id in first:
        k8s.announce(node_id)
    await cluster.start_only([*first, *cluster.gateway_names])
    await lab.start_on(cluster, store="sqlite", rooms=ROOMS, users=4)
    await lab.start_load(rate=RATE, seconds=600)
    await lab.wait_acks(count=100)
    return lab.rooms


async def test_scale_three_to_five_to_three_under_load(
    kube: tuple[KubeCluster, FaultLab],
) -> None:
    """3 → 5: nine rooms in ten move to groups with a new node; 5 → 3, one
    pod at a time: every room moves back. Publishing never stops."""
    k8s, lab = kube
    cluster = k8s.cluster
    first = cluster.node_ids[:3]
    rooms = await _three_nodes_under_load(k8s, lab)
    steady = time.monotonic()
    await lab.hold(3.0)
    steady_end = time.monotonic()

    up = lab.mark("scale 3 -> 5")
    await k8s.scale_up(cluster.node_ids[3:])
    grow_s = await k8s.wait_placement(rooms, "rooms on their groups over five nodes")
    grown = time.monotonic()
    moved_up = {m["room"] for m in _moves(cluster) if m.get("event") == "room move committed"}
    assert moved_up, "placement over five nodes moves some rooms"
    # the `rooms` listing names administrators of the new groups
    listed = await lab.administrators()
    for room in rooms:
        assert listed[room] in replicas_for(room, k8s.members, 3), (room, listed[room])

    await lab.hold(2.0)
    down = lab.mark("scale 5 -> 4")
    await k8s.retire("node-4")
    shrink1_s = await k8s.wait_placement(rooms, "rooms off node-4")
    lab.mark("scale 4 -> 3")
    await k8s.retire("node-3")
    shrink2_s = await k8s.wait_placement(rooms, "rooms off node-3")
    shrunk = time.monotonic()
    await lab.hold(2.0)

    lab.replica_nodes = first  # the retired pods' disks went with them
    result = await lab.finish()
    print(_report("steady (no move)", 0.0, _pauses(result.history, rooms, steady, steady_end)))
    print(_report("3 -> 5", grow_s, _pauses(result.history, rooms, up.t, grown)))
    print(_report("5 -> 3", shrink1_s + shrink2_s, _pauses(result.history, rooms, down.t, shrunk)))
    result.assert_ok()
    committed = [m for m in _moves(cluster) if m.get("event") == "room move committed"]
    print(f"moves committed: {len(committed)}, rooms moved up: {len(moved_up)}")
    each = longest_ack_gap(result.history, up.t, grown, sorted(moved_up))
    print("pause per room moved up (s): " + ", ".join(f"{r} {g:.2f}" for r, g in each.items()))
    for node_id in first:  # three nodes, three replicas: each holds every room
        assert _held(cluster, node_id) == set(rooms)


def _events(cluster: LocalCluster, event: str, skip: int) -> list[dict[str, object]]:
    return [m for m in _moves(cluster) if m.get("event") == event][skip:]


async def _kill_when(
    k8s: KubeCluster, event: str, skip: int, what: str
) -> tuple[str, dict[str, object]]:
    """SIGKILL the node that logs `event` (after the first `skip` of them) as
    soon as it does; returns the node and the record."""
    cluster = k8s.cluster
    record = await wait_for(
        lambda: next(iter(_events(cluster, event, skip)), None), MOVE_TIMEOUT, message=what
    )
    node = str(record["node"])
    cluster.kill_node(node)
    return node, record


async def _restart_soon(cluster: LocalCluster, node_id: str) -> None:
    """What the kubelet does with a killed container: start it again."""
    await asyncio.sleep(1.0)
    await cluster.restart_node(node_id)


async def test_moves_survive_killing_coordinators_and_participants(
    kube: tuple[KubeCluster, FaultLab],
) -> None:
    """SIGKILL the coordinator right after a move's prepare starts, a
    participant right after it voted yes (the room is in joint consensus
    with it), and a coordinator right after its decision committed; each
    comes back, as a pod's container would. Every move ends all-or-nothing."""
    k8s, lab = kube
    cluster = k8s.cluster
    rooms = await _three_nodes_under_load(k8s, lab)

    lab.mark("add node-3, SIGKILL a coordinator after prepare")
    started = len(_events(cluster, "room move started", 0))
    await k8s.scale_up(["node-3"])
    coordinator, _ = await _kill_when(k8s, "room move started", started, "a move starts")
    await _restart_soon(cluster, coordinator)
    await k8s.wait_placement(rooms, "rooms on four nodes")

    lab.mark("add node-4, SIGKILL a participant that voted yes")
    prepared = len(_events(cluster, "room move prepared", 0))
    k8s.announce("node-4")
    await cluster.start_only(["node-4"])

    def joint_with_node_4() -> dict[str, object] | None:
        # "prepared": every participant holds the log; the joint entry is out
        events = _events(cluster, "room move prepared", prepared)
        return next((m for m in events if "node-4" in str(m["to"]).split(",")), None)

    await wait_for(joint_with_node_4, MOVE_TIMEOUT, message="node-4 votes yes in a move")
    cluster.kill_node("node-4")
    await _restart_soon(cluster, "node-4")
    await k8s.wait_placement(rooms, "rooms on five nodes")

    lab.mark("retire node-0, SIGKILL a coordinator after its decision")
    committed = len(_events(cluster, "room move committed", 0))
    k8s.withdraw("node-0")
    cluster.kill_node("node-0", signal.SIGTERM)
    coordinator, record = await _kill_when(k8s, "room move committed", committed, "a move commits")
    await _restart_soon(cluster, coordinator)
    await k8s.wait_placement(rooms, "rooms off node-0")
    await lab.hold(2.0)

    lab.replica_nodes = sorted(k8s.members)
    result = await lab.finish()
    result.assert_ok()
    outcomes = [m["event"] for m in _moves(cluster)]
    print(
        f"moves: {outcomes.count('room move committed')} committed, "
        f"{outcomes.count('room move aborted')} aborted; killed after its decision: "
        f"{coordinator} ({record['room']})"
    )


async def test_replacing_every_original_node(kube: tuple[KubeCluster, FaultLab]) -> None:
    """Add two nodes, retire node-0, then node-1, then SIGKILL one more:
    every room still accepts messages, on the groups placement names."""
    k8s, lab = kube
    cluster = k8s.cluster
    rooms = await _three_nodes_under_load(k8s, lab)

    lab.mark("add node-3 and node-4")
    await k8s.scale_up(["node-3", "node-4"])
    await k8s.wait_placement(rooms, "rooms on five nodes")
    for old in ("node-0", "node-1"):
        lab.mark(f"retire {old}")
        await k8s.retire(old)
        await k8s.wait_placement(rooms, f"rooms off {old}")
    # three nodes left, three replicas each: every room on all of them
    assert all(_held(cluster, n) == set(rooms) for n in ("node-2", "node-3", "node-4"))
    lab.mark("SIGKILL node-3")
    cluster.kill_node("node-3")
    await lab.hold(8.0)  # two of three replicas: every room goes on

    lab.replica_nodes = ["node-2", "node-4"]
    result = await lab.finish()
    result.assert_ok()


async def test_a_rolling_restart_moves_nothing(tmp_path: Path) -> None:
    """Every node restarted in turn (SIGTERM, start again, as a rollout does)
    within the member grace: no room moves, publishing goes on."""
    emulator = K8sEmulator()
    await emulator.start()
    k8s = KubeCluster(tmp_path, emulator, nodes=5, grace=60.0)
    lab = FaultLab(tmp_path, None, "rolling restart")
    cluster = k8s.cluster
    try:
        for node_id in cluster.node_ids:
            k8s.announce(node_id)
        await cluster.start_only([*cluster.node_ids, *cluster.gateway_names])
        await lab.start_on(cluster, store="sqlite", rooms=ROOMS, users=4)
        await k8s.wait_placement(lab.rooms, "rooms on their groups")
        await lab.start_load(rate=RATE, seconds=600)
        await lab.wait_acks(count=100)
        before = len(_events(cluster, "room move started", 0))
        for node_id in reversed(cluster.node_ids):  # a StatefulSet rolls from the top
            lab.mark(f"restart {node_id}")
            cluster.kill_node(node_id, signal.SIGTERM)
            await cluster.wait_exit(node_id)
            await cluster.restart_node(node_id)
            await lab.hold(2.0)
        await k8s.wait_placement(lab.rooms, "rooms on their groups after the rollout")
        result = await lab.finish()
        result.assert_ok()
        assert len(_events(cluster, "room move started", 0)) == before
    finally:
        await lab.close()
        await emulator.stop()
