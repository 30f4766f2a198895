"""The shared LocalCluster harness on real processes: start, chat, kill, pause, restart."""

from __future__ import annotations

import signal
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

from parley.supervisor import grpc_serving, http_ready
from support.client import ChatClient
from support.cluster import LocalCluster, port_is_free
from support.wait import wait_for

MakeCluster = Callable[..., Awaitable[LocalCluster]]


def _alive(pid: int) -> bool:
    """True when process `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def test_cluster_fixture_serves_chat(cluster: LocalCluster) -> None:
    """The `cluster` fixture is 3 healthy nodes and a ready gateway that carry a message."""
    assert cluster.node_ids == ["node-0", "node-1", "node-2"]
    for node_id in cluster.node_ids:
        assert await grpc_serving(cluster.node_addr(node_id))
    assert await http_ready(cluster.gateway_http())
    async with await ChatClient.connect(cluster.gateway_url(), "alice") as alice:
        assert (await alice.create("lobby"))["type"] == "created"
        assert (await alice.join("lobby"))["type"] == "joined"
        ack = await alice.send("lobby", "hi")
        assert ack["type"] == "ack"
        entries = await alice.wait_deliveries("lobby", 1)
        assert entries[-1]["seq"] == ack["seq"]
    assert '"event"' in cluster.log_path("node-0").read_text()  # JSON log lines


async def test_kill_restart_pause_and_stop(make_cluster: MakeCluster) -> None:
    """kill_node/restart_node keep ports and data; pause/resume freeze; stop leaves nothing."""
    cluster = await make_cluster(nodes=3, gateways=1, store="sqlite")
    pids = {name: cluster.pid(name) for name in cluster.procs}

    cluster.kill_node("node-1")
    assert not cluster.is_running("node-1")
    assert not await grpc_serving(cluster.node_addr("node-1"), seconds=0.5)
    await cluster.restart_node("node-1")
    assert cluster.pid("node-1") != pids["node-1"]
    assert await grpc_serving(cluster.node_addr("node-1"))
    # one log per process across restarts: both starts are in it
    assert cluster.log_path("node-1").read_text().count("=== ") == 2

    cluster.pause_node("node-2")
    assert not await grpc_serving(cluster.node_addr("node-2"), seconds=0.5)
    cluster.resume_node("node-2")
    await cluster.wait_node_healthy("node-2", timeout=10)

    cluster.kill_gateway(0, signal.SIGTERM)
    assert await cluster.wait_exit("gateway-0") is not None
    await cluster.restart_gateway(0)
    async with await ChatClient.connect(cluster.gateway_url(), "bob") as bob:
        assert (await bob.ping())["type"] == "pong"

    cluster.pause_node("node-0")  # stop() must also end a paused process
    await cluster.stop()
    now = {name: cluster.pid(name) for name in cluster.procs}
    assert not any(_alive(pid) for pid in [*pids.values(), *now.values()])
    ports = [
        int(a.rsplit(":", 1)[1])
        for p in cluster.procs.values()
        for a in (p.grpc, p.http, p.ws)
        if a
    ]
    await wait_for(lambda: all(port_is_free(p) for p in ports), timeout=10, message="ports freed")


async def test_start_retries_when_a_chosen_port_is_taken(tmp_path: Path) -> None:
    """A port taken between choosing and binding makes start() retry on fresh ports."""
    cluster = LocalCluster(tmp_path, nodes=3, gateways=1)
    taken = int(cluster.node_addr("node-1").rsplit(":", 1)[1])
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        try:
            await cluster.start()
            assert cluster.node_addr("node-1") != f"127.0.0.1:{taken}"
            assert await grpc_serving(cluster.node_addr("node-1"))
            log = cluster.log_path("node-1").read_text().lower()
            assert any(sign in log for sign in ("address already in use", "failed to bind"))
        finally:
            await cluster.stop()
