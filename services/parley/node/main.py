"""`parley node`: one gRPC room host."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from parley import eventloop
from parley._generated import peer_service_pb2, peer_service_pb2_grpc, room_service_pb2
from parley._generated import room_service_pb2_grpc as room_grpc
from parley.archive.postgres import PostgresArchive
from parley.cluster.channels import SERVER_OPTIONS, ChannelPool
from parley.cluster.factory import discovery_from_config
from parley.cluster.health import HealthMonitor
from parley.config import NodeConfig
from parley.observability import tracing
from parley.observability.http import serve_http
from parley.observability.log import configure, get_logger
from parley.room.replica import Timing
from parley.room.retention import RetentionPolicy
from parley.room.state import DedupeWindow
from parley.room.stores import open_store
from parley.security.tls import load as load_tls

from .archiver import Archiver
from .core import NodeCore
from .mover import RoomMover
from .peers import PeerServicer, PeerTransport
from .retention import RetentionSweeper
from .rooms import RoomServicer

log = get_logger("parley.node")

SERVICE_NAMES = (
    room_service_pb2.DESCRIPTOR.services_by_name["RoomService"].full_name,
    peer_service_pb2.DESCRIPTOR.services_by_name["PeerService"].full_name,
)


async def serve(cfg: NodeConfig, stop: asyncio.Event) -> None:
    """Run a node until `stop` is set, then drain and shut down."""
    discovery = discovery_from_config(cfg)
    await discovery.start()
    tls = load_tls(cfg.tls_cert, cfg.tls_key, cfg.tls_ca, cfg.tls_server_name)
    pool = ChannelPool(discovery, tls)
    monitor = HealthMonitor(discovery, pool, self_id=cfg.id)
    store = open_store(cfg.store, cfg.data_dir, cfg.id)
    core = NodeCore(
        cfg.id,
        store,
        members=discovery.members,
        up_nodes=monitor.up_nodes,
        replication=cfg.replicas,
        timing=Timing(
            dedupe=DedupeWindow(cfg.dedupe_count, int(cfg.dedupe_seconds * 1000)),
            log_tail=cfg.log_tail,
            snapshot_every=cfg.snapshot_every,
        ),
        retention=RetentionPolicy(cfg.retention_entries, cfg.retention_seconds),
        presence_limit=cfg.presence_limit,
    )
    transport = PeerTransport(core, pool)
    mover = RoomMover(core, cfg.move_concurrency)
    sweeper = RetentionSweeper(core, cfg.retention_sweep_seconds)
    archiver = await _archiver(cfg, core)
    await core.start()

    server = grpc.aio.server(options=SERVER_OPTIONS)
    room_grpc.add_RoomServiceServicer_to_server(
        RoomServicer(core, lambda node: room_grpc.RoomServiceStub(pool.get(node))), server
    )
    peer_service_pb2_grpc.add_PeerServiceServicer_to_server(PeerServicer(core), server)
    # grpc-stubs lacks grpc_health's aio module, which the package has had since 1.32
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    if tls is None:
        port = server.add_insecure_port(cfg.grpc)
    else:
        port = server.add_secure_port(cfg.grpc, tls.server_credentials())
    if port == 0:
        raise SystemExit(f"cannot listen on {cfg.grpc}")
    await server.start()
    await monitor.start()
    transport.start()
    mover.start()
    sweeper.start()
    if archiver is not None:
        archiver.start()
    serving = health_pb2.HealthCheckResponse.SERVING
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, serving)

    def store_writable(writable: bool) -> None:
        # a node that cannot persist must not be taken for up: NOT_SERVING
        # makes every peer's detector see it down, so its rooms fail over
        status = serving if writable else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", *SERVICE_NAMES):
            health_tasks.add(asyncio.ensure_future(health_servicer.set(name, status)))
        for task in list(health_tasks):
            task.add_done_callback(health_tasks.discard)

    health_tasks: set[asyncio.Future[None]] = set()
    core.store.on_writable = store_writable
    http = await serve_http(cfg.http, ready=lambda: not core.draining and core.store.writable)
    log.info("node ready", grpc=cfg.grpc, http=cfg.http, store=cfg.store, replicas=cfg.replicas)

    await stop.wait()
    log.info("draining", seconds=cfg.drain_seconds)
    # NOT_SERVING makes every peer's health watch report this node down, so
    # the next replicas take over its rooms while it still answers their votes
    await health_servicer.enter_graceful_shutdown()
    core.hand_over()
    deadline = time.monotonic() + cfg.drain_seconds
    # polled: handovers happen in whichever room elects first, not as one event
    while core.administered and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    http.close()
    await _bounded("room mover", mover.stop())
    await _bounded("retention sweep", sweeper.stop())
    if archiver is not None:
        await _bounded("archiver", archiver.stop())
        await _bounded("archive connections", archiver.archive.close())
    grace = min(1.0, cfg.drain_seconds)
    await _bounded("grpc server", server.stop(grace=grace), grace + 2.0)
    await _bounded("peer senders", transport.stop())
    await _bounded("health watches", monitor.stop())
    await _bounded("room replicas", core.stop())
    await _bounded("channels", pool.close())
    await _bounded("discovery", discovery.stop())
    tracing.shutdown()
    log.info("stopped")


async def _archiver(cfg: NodeConfig, core: NodeCore) -> Archiver | None:
    """The archiver cfg asks for (None: no archive). The database may be down
    now: chat starts anyway, and the archive catches up when it is back."""
    dsn = cfg.archive_dsn
    if cfg.archive_dsn_file:
        # (start-up, before serving: nothing waits on the loop yet)
        dsn = Path(cfg.archive_dsn_file).read_text(encoding="utf-8").strip()  # noqa: ASYNC240
    if not dsn:
        return None
    archive = PostgresArchive(dsn)
    await archive.open()
    core.archive = archive
    return Archiver(core, archive, cfg.archive_every, cfg.archive_batch)


async def _bounded(step: str, awaitable: Awaitable[object], seconds: float = 3.0) -> None:
    """Await one shutdown step, but never let it hold the exit past `seconds`.

    Kubernetes SIGKILLs a pod that outlives its grace period; a step that
    hangs (a stuck RPC, say) is logged and skipped instead, so the exit stays
    clean and the log says what was slow.
    """
    try:
        async with asyncio.timeout(seconds):
            await awaitable
    except TimeoutError:
        log.warning("shutdown step timed out", step=step, seconds=seconds)


async def _main(cfg: NodeConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(cfg, stop)


def run(cfg: NodeConfig) -> int:
    """Run a node until SIGTERM/SIGINT. Returns the process exit code."""
    configure("node", cfg.id, cfg.log_format, cfg.log_level)
    tracing.configure("parley-node", cfg.id)
    with contextlib.suppress(KeyboardInterrupt):
        eventloop.run(_main(cfg))
    return 0
