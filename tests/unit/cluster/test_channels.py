"""ChannelPool: one channel per node that follows discovery."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from parley.cluster.channels import CHANNEL_OPTIONS, SERVER_OPTIONS, ChannelPool
from parley.cluster.static import StaticDiscovery

SERVING = health_pb2.HealthCheckResponse.SERVING


async def start_server(status: int = SERVING) -> tuple[grpc.aio.Server, str]:
    """A health server on 127.0.0.1:0 with the node server options."""
    server = grpc.aio.server(options=SERVER_OPTIONS)
    servicer = health_aio.HealthServicer()
    await servicer.set("", status)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


async def check(channel: grpc.aio.Channel) -> int:
    """One Health.Check on the channel, with a deadline."""
    stub = health_pb2_grpc.HealthStub(channel)
    response = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    return response.status


@pytest.fixture
async def servers() -> AsyncIterator[list[str]]:
    """Two running health servers; their addresses."""
    started = [await start_server(), await start_server()]
    yield [address for _, address in started]
    await asyncio.gather(*(server.stop(None) for server, _ in started))


def test_options_match_the_agreed_keepalive() -> None:
    """Client pings every second and tolerates one second; the server permits it."""
    client = dict(CHANNEL_OPTIONS)
    server = dict(SERVER_OPTIONS)
    assert client["grpc.keepalive_time_ms"] == 1000
    assert client["grpc.keepalive_timeout_ms"] == 1000
    assert client["grpc.http2.ping_timeout_ms"] == 1000
    assert client["grpc.keepalive_permit_without_calls"] == 1
    assert server["grpc.keepalive_permit_without_calls"] == 1
    assert server["grpc.http2.min_ping_interval_without_data_ms"] < 1000
    assert client["grpc.max_receive_message_length"] == 16 * 1024 * 1024


async def test_get_returns_one_shared_working_channel(servers: list[str]) -> None:
    """get() gives the same connected channel every time for a node."""
    pool = ChannelPool(StaticDiscovery({"node-0": servers[0]}))
    channel = pool.get("node-0")
    assert pool.get("node-0") is channel
    assert await check(channel) == SERVING
    assert pool.address("node-0") == servers[0]
    await pool.close()


async def test_unknown_node_raises_key_error() -> None:
    """A node that is not a member has no channel and no address."""
    pool = ChannelPool(StaticDiscovery({}))
    with pytest.raises(KeyError):
        pool.get("node-9")
    with pytest.raises(KeyError):
        pool.address("node-9")
    await pool.close()


async def test_address_change_replaces_the_channel(servers: list[str]) -> None:
    """After a node moves, get() returns a new channel to the new address."""
    discovery = StaticDiscovery({"node-0": servers[0]})
    pool = ChannelPool(discovery)
    old = pool.get("node-0")
    assert await check(old) == SERVING
    discovery.set_members({"node-0": servers[1]})
    new = pool.get("node-0")
    assert new is not old
    assert pool.address("node-0") == servers[1]
    assert await check(new) == SERVING
    await pool.close()


async def test_removed_node_is_forgotten(servers: list[str]) -> None:
    """A node that leaves discovery has no channel any more."""
    discovery = StaticDiscovery({"node-0": servers[0], "node-1": servers[1]})
    pool = ChannelPool(discovery)
    kept = pool.get("node-0")
    pool.get("node-1")
    discovery.set_members({"node-0": servers[0]})
    with pytest.raises(KeyError):
        pool.get("node-1")
    assert pool.get("node-0") is kept
    await pool.close()


async def test_close_closes_channels_and_refuses_get(servers: list[str]) -> None:
    """After close() calls on old channels fail and get() raises."""
    pool = ChannelPool(StaticDiscovery({"node-0": servers[0]}))
    channel = pool.get("node-0")
    assert await check(channel) == SERVING
    await pool.close()
    with pytest.raises(RuntimeError):
        pool.get("node-0")
    with pytest.raises((grpc.aio.UsageError, grpc.aio.AioRpcError)):
        await check(channel)
