"""Fixtures: an in-process fake node and gateways wired to it on 127.0.0.1:0."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from gateway_fake_node import FakeRoomService, start_fake_node
from parley.cluster.channels import ChannelPool
from parley.cluster.health import HealthMonitor
from parley.cluster.static import StaticDiscovery
from parley.config import GatewayConfig
from parley.gateway.app import Gateway
from support.wait import wait_for

StartGateway = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def fake_nodes() -> AsyncIterator[Callable[..., Awaitable[tuple[FakeRoomService, str]]]]:
    """Start fake nodes on demand: `service, address = await fake_nodes("node-0")`."""
    servers = []

    async def start(node_id: str = "node-0", redirect_to: str | None = None) -> Any:
        server, service, address = await start_fake_node(node_id, redirect_to)
        servers.append(server)
        return service, address

    yield start
    for server in servers:
        await server.stop(None)


@pytest.fixture
async def start_gateway() -> AsyncIterator[StartGateway]:
    """Start gateways on demand over the given nodes; all are closed afterwards."""
    running: list[tuple[Gateway, StaticDiscovery, ChannelPool, HealthMonitor]] = []

    async def start(nodes: dict[str, str], *, wait_up: bool = True, **overrides: Any) -> Gateway:
        # With a secret or keys in the overrides, auth is on (the default).
        auth = "jwt" if overrides.get("jwt_secret") or overrides.get("jwt_jwks") else "off"
        cfg = dataclasses.replace(
            GatewayConfig(ws="127.0.0.1:0", nodes=nodes, drain_seconds=2.0, auth=auth), **overrides
        )
        discovery = StaticDiscovery(nodes)
        pool = ChannelPool(discovery)
        health = HealthMonitor(discovery, pool)
        await health.start()
        gateway = Gateway(cfg, discovery, pool, health)
        await gateway.start()
        running.append((gateway, discovery, pool, health))
        if wait_up and nodes:
            await wait_for(gateway.ready, 10, message="a node up")
        return gateway

    yield start
    for gateway, _discovery, pool, health in running:
        await gateway.close()
        await health.stop()
        await pool.close()


@pytest.fixture
async def node(fake_nodes: Any) -> tuple[FakeRoomService, str]:
    """One fake node, node-0, administering every room."""
    return await fake_nodes("node-0")  # type: ignore[no-any-return]


@pytest.fixture
async def gateway(node: tuple[FakeRoomService, str], start_gateway: StartGateway) -> Gateway:
    """A gateway over the one fake node, with a rate limit tests do not hit."""
    return await start_gateway({"node-0": node[1]}, rate_limit=100_000.0, rate_burst=10_000)
