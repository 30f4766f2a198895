"""`parley gateway`: run one WebSocket gateway until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import signal

from parley import eventloop
from parley.config import GatewayConfig
from parley.gateway.server import serve
from parley.observability import tracing
from parley.observability.log import configure, get_logger

log = get_logger("parley.gateway")


async def _main(cfg: GatewayConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    running = await serve(cfg)
    await stop.wait()
    log.info("draining", seconds=cfg.drain_seconds)
    await running.close()
    log.info("stopped")


def run(cfg: GatewayConfig) -> int:
    """Run a gateway until SIGTERM/SIGINT, drain, and return the exit code (0)."""
    configure("gateway", cfg.id, cfg.log_format, cfg.log_level)
    tracing.configure("parley-gateway", cfg.id)
    with contextlib.suppress(KeyboardInterrupt):
        eventloop.run(_main(cfg))
    tracing.shutdown()
    return 0
