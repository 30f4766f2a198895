"""Build a gateway with real discovery, channels and health, plus its HTTP port."""

from __future__ import annotations

from dataclasses import dataclass

from websockets.asyncio.server import Server

from parley.cluster.channels import ChannelPool
from parley.cluster.discovery import Discovery
from parley.cluster.factory import discovery_from_config
from parley.cluster.health import HealthMonitor
from parley.config import GatewayConfig
from parley.gateway.app import Gateway
from parley.observability.http import serve_http
from parley.security.tls import load as load_tls


@dataclass(slots=True)
class RunningGateway:
    """A serving gateway and what it owns; close() stops it all."""

    gateway: Gateway
    http: Server
    discovery: Discovery
    pool: ChannelPool
    health: HealthMonitor

    async def close(self) -> None:
        """Readiness off, sockets closed with 1001 within the drain time, then the rest."""
        await self.gateway.close()
        self.http.close()
        await self.health.stop()
        await self.pool.close()
        await self.discovery.stop()
        await self.http.wait_closed()


async def serve(cfg: GatewayConfig) -> RunningGateway:
    """Start a gateway: discovery, health watches, the WebSocket and HTTP servers.

    Returns:
        The running gateway; `await close()` it to stop.
    """
    discovery = discovery_from_config(cfg)
    await discovery.start()
    tls = load_tls(cfg.tls_cert, cfg.tls_key, cfg.tls_ca, cfg.tls_server_name)
    pool = ChannelPool(discovery, tls)
    health = HealthMonitor(discovery, pool)
    await health.start()
    gateway = Gateway(cfg, discovery, pool, health)
    await gateway.start()
    http = await serve_http(cfg.http, ready=gateway.ready)
    return RunningGateway(gateway, http, discovery, pool, health)
