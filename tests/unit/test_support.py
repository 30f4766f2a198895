"""The test harness itself: wait_for, ChatClient and LocalCluster's plan."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from parley.cli import parse_gateway_config, parse_node_config
from support.client import ChatClient, with_query
from support.cluster import LocalCluster, free_ports, port_is_free
from support.wait import wait_for
from websockets.asyncio.server import ServerConnection, serve


async def test_wait_for_returns_the_truthy_value() -> None:
    """wait_for returns the first truthy value, from plain or async predicates."""
    box: list[int] = []
    asyncio.get_running_loop().call_later(0.05, box.append, 7)
    assert await wait_for(lambda: box, timeout=5) == [7]

    async def ready() -> str:
        return "yes"

    assert await wait_for(ready, timeout=1) == "yes"


async def test_wait_for_times_out_with_the_message() -> None:
    """wait_for raises TimeoutError naming what it waited for."""
    with pytest.raises(TimeoutError, match="the moon"):
        await wait_for(lambda: 0, timeout=0.1, message="the moon")


def test_free_ports_are_distinct_and_free() -> None:
    """free_ports gives distinct ports that can be bound."""
    ports = free_ports(8)
    assert len(set(ports)) == 8
    assert all(port_is_free(p) for p in ports)


def test_with_query() -> None:
    """with_query appends user/token parameters correctly."""
    assert with_query("ws://h:1/ws", "alice") == "ws://h:1/ws?user=alice"
    assert with_query("ws://h:1/ws?x=1", token="a.b") == "ws://h:1/ws?x=1&token=a.b"
    assert with_query("ws://h:1/ws") == "ws://h:1/ws"


def test_local_cluster_plan(tmp_path: Path) -> None:
    """LocalCluster gives every process its own ports and valid command lines."""
    cluster = LocalCluster(tmp_path, nodes=3, gateways=2, store="sqlite", jwt_secret="k")
    assert cluster.node_ids == ["node-0", "node-1", "node-2"]
    addresses = [cluster.node_addr(n) for n in cluster.node_ids]
    addresses += [cluster.node_http(n) for n in cluster.node_ids]
    addresses += [cluster.gateway_ws(i) for i in range(2)]
    addresses += [cluster.gateway_http(i) for i in range(2)]
    assert len(set(addresses)) == 10
    assert cluster.gateway_url(1) == f"ws://{cluster.gateway_ws(1)}/ws"
    node = parse_node_config(cluster.procs["node-2"].argv[4:], {})
    assert node.id == "node-2" and node.grpc == cluster.node_addr("node-2")
    assert node.store == "sqlite" and Path(node.data_dir).is_dir()
    assert set(node.nodes) == set(cluster.node_ids)
    gateway = parse_gateway_config(cluster.procs["gateway-1"].argv[4:], {})
    assert gateway.jwt_secret == "k" and gateway.ws == cluster.gateway_ws(1)
    assert cluster.log_path("node-0").parent == tmp_path / "logs"
    assert cluster.env["PARLEY_LOG_FORMAT"] == "json"


@pytest.fixture
async def fake_gateway() -> AsyncIterator[str]:
    """A tiny WebSocket server answering like a gateway: ping, join, send (with a delivery)."""

    async def handler(ws: ServerConnection) -> None:
        seq = 0
        async for raw in ws:
            frame = json.loads(raw)
            reply: dict[str, object]
            if frame["type"] == "ping":
                reply = {"type": "pong"}
            elif frame["type"] == "join":
                reply = {"type": "joined", "room": frame["room"], "last_seq": seq, "members": []}
            elif frame["type"] == "send":
                seq += 1
                reply = {"type": "ack", "room": frame["room"], "seq": seq}
                # The delivery may overtake the ack, as it can from a real gateway.
                await ws.send(
                    json.dumps({"type": "message", "room": frame["room"], "seq": seq, "text": "x"})
                )
            else:
                reply = {"type": "error", "code": "bad_request", "message": "no"}
            if "id" in frame:
                reply["id"] = frame["id"]
            await ws.send(json.dumps(reply))

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}/ws"


async def test_chat_client_matches_replies_and_files_deliveries(fake_gateway: str) -> None:
    """request() gets the reply with its id; deliveries are filed per room and in the inbox."""
    async with await ChatClient.connect(fake_gateway, "alice") as client:
        assert (await client.ping())["type"] == "pong"
        assert (await client.join("general"))["type"] == "joined"
        ack = await client.send("general", "hi", msg_id="m1")
        assert ack == {"type": "ack", "room": "general", "seq": 1, "id": "m1"}
        message = await client.next_of("message", room="general")
        assert message["seq"] == 1
        await client.send("general", "again")
        entries = await client.wait_deliveries("general", 2)
        assert [e["seq"] for e in entries] == [1, 2]
        assert len(client.messages("general")) == 2
        error = await client.request({"type": "nonsense"})
        assert error["type"] == "error"
        with pytest.raises(TimeoutError):
            await client.next_of("deleted", timeout=0.1)
    assert client.closed.is_set()
