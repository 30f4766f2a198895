"""`parley up` pieces that need no cluster: the plan, the readiness probes, port checks."""

from __future__ import annotations

import socket
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from parley.cli import parse_gateway_config, parse_node_config
from parley.config import parse_nodes
from parley.observability.http import serve_http
from parley.supervisor import (
    UpOptions,
    grpc_serving,
    http_ready,
    http_status,
    plan,
    port_in_use,
)


def test_plan_names_ports_and_flags() -> None:
    """Nodes get base_grpc+i and base_node_http+i, gateways port+i and base_gateway_http+i."""
    opts = UpOptions(nodes=3, gateways=2, port=8080, data_dir="/d", store="memory")
    children = plan(opts, python="py")
    assert [c.name for c in children] == ["node-0", "node-1", "node-2", "gateway-0", "gateway-1"]
    assert [c.grpc for c in children[:3]] == [f"127.0.0.1:{7001 + i}" for i in range(3)]
    assert [c.http for c in children[:3]] == [f"127.0.0.1:{9101 + i}" for i in range(3)]
    assert [c.ws for c in children[3:]] == ["127.0.0.1:8080", "127.0.0.1:8081"]
    assert [c.http for c in children[3:]] == ["127.0.0.1:9200", "127.0.0.1:9201"]
    addresses = [a for c in children for a in (c.grpc, c.http, c.ws) if a]
    assert len(addresses) == len(set(addresses))  # nothing clashes


def test_plan_argv_parses_back() -> None:
    """Each child's argv is a valid `parley node`/`parley gateway` command line."""
    children = plan(UpOptions(nodes=2, gateways=1, data_dir="/d", store="sqlite"), python="py")
    node = parse_node_config(children[1].argv[4:], {})
    assert children[1].argv[:4] == ["py", "-m", "parley", "node"]
    assert node.id == "node-1" and node.grpc == "127.0.0.1:7002"
    assert node.data_dir == str(Path("/d") / "node-1") and node.store == "sqlite"
    assert node.nodes == parse_nodes("node-0=127.0.0.1:7001,node-1=127.0.0.1:7002")
    gateway = parse_gateway_config(children[2].argv[4:], {})
    assert gateway.ws == "127.0.0.1:8080" and gateway.nodes == node.nodes
    assert gateway.discovery == "static" and gateway.jwt_secret == ""


async def test_grpc_serving_follows_the_health_service() -> None:
    """grpc_serving is true only while the standard health service says SERVING."""
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        address = f"127.0.0.1:{port}"
        await servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        assert not await grpc_serving(address)
        await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        assert await grpc_serving(address)
    finally:
        await server.stop(None)
    assert not await grpc_serving(address, seconds=0.5)


async def test_http_ready_reads_readyz() -> None:
    """http_ready is true on a 200 from /readyz and false on 503 or no server."""
    state = {"ready": False}
    server = await serve_http("127.0.0.1:0", ready=lambda: state["ready"])
    port = server.sockets[0].getsockname()[1]
    try:
        address = f"127.0.0.1:{port}"
        assert await http_status(address, "/readyz") == 503
        assert not await http_ready(address)
        state["ready"] = True
        assert await http_ready(address)
    finally:
        server.close()
        await server.wait_closed()
    assert not await http_ready(address, seconds=0.5)


def test_port_in_use() -> None:
    """port_in_use sees a listening socket and not a free port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        address = f"127.0.0.1:{sock.getsockname()[1]}"
        assert port_in_use(address)
    assert not port_in_use(address)
