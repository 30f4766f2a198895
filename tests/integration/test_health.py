"""HealthMonitor: up/down from real gRPC health servers, in-process and in subprocesses."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from parley.cluster.channels import SERVER_OPTIONS, ChannelPool
from parley.cluster.health import HealthMonitor
from parley.cluster.static import StaticDiscovery
from prometheus_client import REGISTRY

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

# Keepalive fails a silent peer's stream in ~2 s; a little slack for a busy CI box.
SILENT_PEER_DEADLINE = 3.0

SUBPROCESS_SERVER = """
import asyncio
import grpc
from grpc_health.v1 import health_pb2_grpc
from grpc_health.v1.health import aio
from parley.cluster.channels import SERVER_OPTIONS

async def main():
    server = grpc.aio.server(options=SERVER_OPTIONS)
    health_pb2_grpc.add_HealthServicer_to_server(aio.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    await server.wait_for_termination()

asyncio.run(main())
"""


class HealthServer:
    """An in-process gRPC server running the standard health service."""

    def __init__(self) -> None:
        self.servicer = health_aio.HealthServicer()
        self.server: grpc.aio.Server | None = None
        self.port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Listen on port 0 the first time, on the same port after a stop."""
        self.server = grpc.aio.server(options=SERVER_OPTIONS)
        health_pb2_grpc.add_HealthServicer_to_server(self.servicer, self.server)
        self.port = self.server.add_insecure_port(f"127.0.0.1:{self.port}")
        await self.server.start()

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(None)
            self.server = None

    async def set(self, status: int) -> None:
        await self.servicer.set("", status)


def peer_up_gauge(node_id: str) -> float | None:
    """The exported parley_peer_up value for the node, None when absent."""
    return REGISTRY.get_sample_value("parley_peer_up", {"peer": node_id})


async def wait_state(monitor: HealthMonitor, node_id: str, up: bool, within: float) -> float:
    """Wait until the monitor reports node_id up/down; returns the seconds it took."""
    started = time.monotonic()
    reached = asyncio.get_running_loop().create_future()

    def on_change(changed: str, now_up: bool) -> None:
        if changed == node_id and now_up == up and not reached.done():
            reached.set_result(None)

    unsubscribe = monitor.subscribe(on_change)
    try:
        if monitor.is_up(node_id) != up:
            async with asyncio.timeout(within):
                await reached
    finally:
        unsubscribe()
    return time.monotonic() - started


@pytest.fixture
async def servers() -> AsyncIterator[list[HealthServer]]:
    """Three running in-process health servers, all SERVING."""
    started = [HealthServer() for _ in range(3)]
    for server in started:
        await server.start()
    yield started
    for server in started:
        await server.stop()


async def make_monitor(
    nodes: dict[str, str], self_id: str | None = None
) -> tuple[StaticDiscovery, ChannelPool, HealthMonitor]:
    discovery = StaticDiscovery(nodes)
    pool = ChannelPool(discovery)
    monitor = HealthMonitor(discovery, pool, self_id=self_id)
    await monitor.start()
    return discovery, pool, monitor


async def close(pool: ChannelPool, monitor: HealthMonitor) -> None:
    await monitor.stop()
    await pool.close()


async def test_serving_nodes_come_up(servers: list[HealthServer]) -> None:
    """Every SERVING node is reported up, with parley_peer_up = 1."""
    nodes = {f"node-{i}": s.address for i, s in enumerate(servers)}
    _, pool, monitor = await make_monitor(nodes)
    for node_id in nodes:
        assert await monitor.wait_up(node_id, timeout=5)
        assert peer_up_gauge(node_id) == 1
    assert monitor.up_nodes() == set(nodes)
    await close(pool, monitor)


async def test_status_flips_reach_subscribers(servers: list[HealthServer]) -> None:
    """NOT_SERVING marks a node down and SERVING marks it up again, with callbacks."""
    _, pool, monitor = await make_monitor({"node-0": servers[0].address})
    seen: list[tuple[str, bool]] = []
    monitor.subscribe(lambda node_id, up: seen.append((node_id, up)))
    await wait_state(monitor, "node-0", True, 5)
    await servers[0].set(NOT_SERVING)
    await wait_state(monitor, "node-0", False, 2)
    assert peer_up_gauge("node-0") == 0
    await servers[0].set(SERVING)
    await wait_state(monitor, "node-0", True, 2)
    assert seen == [("node-0", True), ("node-0", False), ("node-0", True)]
    await close(pool, monitor)


async def test_stopped_server_is_down_and_comes_back(servers: list[HealthServer]) -> None:
    """A server that stops is down at once; restarted on the same port it is up again."""
    _, pool, monitor = await make_monitor({"node-0": servers[0].address})
    await wait_state(monitor, "node-0", True, 5)
    await servers[0].stop()
    await wait_state(monitor, "node-0", False, 2)
    await servers[0].start()
    await wait_state(monitor, "node-0", True, 5)
    await close(pool, monitor)


async def test_unreachable_node_stays_down_and_wait_up_times_out(
    servers: list[HealthServer],
) -> None:
    """A node nobody listens for is down; wait_up returns False after its timeout."""
    port = servers[2].port
    await servers[2].stop()
    _, pool, monitor = await make_monitor({"node-2": f"127.0.0.1:{port}"})
    assert not await monitor.wait_up("node-2", timeout=0.5)
    assert not monitor.is_up("node-2")
    assert peer_up_gauge("node-2") == 0
    await close(pool, monitor)


async def test_self_is_always_up_and_not_watched(servers: list[HealthServer]) -> None:
    """self_id is up without a server; others are watched."""
    nodes = {"self-node": "127.0.0.1:1", "other-node": servers[1].address}
    _, pool, monitor = await make_monitor(nodes, self_id="self-node")
    assert monitor.is_up("self-node")
    assert await monitor.wait_up("self-node", timeout=0)
    await wait_state(monitor, "other-node", True, 5)
    assert monitor.up_nodes() == {"self-node", "other-node"}
    assert peer_up_gauge("self-node") is None
    await close(pool, monitor)


async def test_follows_discovery_changes(servers: list[HealthServer]) -> None:
    """Added nodes are watched; removed nodes go down and lose their gauge."""
    discovery, pool, monitor = await make_monitor({"node-0": servers[0].address})
    await wait_state(monitor, "node-0", True, 5)
    discovery.set_members({"node-0": servers[0].address, "node-1": servers[1].address})
    await wait_state(monitor, "node-1", True, 5)
    seen: list[tuple[str, bool]] = []
    monitor.subscribe(lambda node_id, up: seen.append((node_id, up)))
    discovery.set_members({"node-1": servers[1].address})
    assert seen == [("node-0", False)]
    assert monitor.up_nodes() == {"node-1"}
    assert peer_up_gauge("node-0") is None
    await close(pool, monitor)


async def test_moved_node_is_watched_at_its_new_address(servers: list[HealthServer]) -> None:
    """After an address change the state comes from the server at the new address."""
    discovery, pool, monitor = await make_monitor({"node-0": servers[0].address})
    await wait_state(monitor, "node-0", True, 5)
    await servers[1].set(NOT_SERVING)
    discovery.set_members({"node-0": servers[1].address})
    assert not monitor.is_up("node-0")
    await servers[1].set(SERVING)
    await wait_state(monitor, "node-0", True, 5)
    await close(pool, monitor)


async def spawn_server() -> tuple[asyncio.subprocess.Process, str]:
    """A health server in a child process; returns it and its address."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SUBPROCESS_SERVER, stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    async with asyncio.timeout(20):
        port = int(await process.stdout.readline())
    return process, f"127.0.0.1:{port}"


@pytest.fixture
async def children() -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """Child processes to clean up whatever the test did to them."""
    processes: list[asyncio.subprocess.Process] = []
    yield processes
    for process in processes:
        if process.returncode is None:
            os.kill(process.pid, signal.SIGCONT)
            process.kill()
        await process.wait()


async def test_killed_and_stopped_peers_are_detected(
    children: list[asyncio.subprocess.Process],
) -> None:
    """SIGKILL and SIGSTOP mark a peer down within ~3 s; SIGCONT brings it back."""
    killed, killed_address = await spawn_server()
    children.append(killed)
    paused, paused_address = await spawn_server()
    children.append(paused)
    _, pool, monitor = await make_monitor({"killed": killed_address, "paused": paused_address})
    await wait_state(monitor, "killed", True, 10)
    await wait_state(monitor, "paused", True, 10)

    killed.send_signal(signal.SIGKILL)
    took = await wait_state(monitor, "killed", False, SILENT_PEER_DEADLINE)
    print(f"SIGKILL detected in {took:.2f}s")

    paused.send_signal(signal.SIGSTOP)
    took = await wait_state(monitor, "paused", False, SILENT_PEER_DEADLINE)
    print(f"SIGSTOP detected in {took:.2f}s")
    assert monitor.up_nodes() == set()

    paused.send_signal(signal.SIGCONT)
    took = await wait_state(monitor, "paused", True, 5)
    print(f"SIGCONT seen up in {took:.2f}s")
    await close(pool, monitor)


async def test_closing_the_pool_first_marks_nodes_down(servers: list[HealthServer]) -> None:
    """If the pool closes before the monitor stops, watches end and nodes go down."""
    _, pool, monitor = await make_monitor({"node-0": servers[0].address})
    await wait_state(monitor, "node-0", True, 5)
    await pool.close()
    await wait_state(monitor, "node-0", False, 2)
    await monitor.stop()
