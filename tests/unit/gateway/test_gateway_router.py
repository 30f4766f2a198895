"""Routing: administrator hints, retries within a deadline, error code mapping."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import grpc
import pytest
from gateway_fake_node import FakeRoomService
from parley._generated import room_service_pb2 as pb
from parley.cluster.channels import ChannelPool
from parley.cluster.health import HealthMonitor
from parley.cluster.placement import replicas_for
from parley.cluster.static import StaticDiscovery
from parley.gateway.errors import classify, from_rpc_error
from parley.gateway.router import Router
from parley.protocol.errors import ProtocolError
from parley.room.errors import NotAdministrator, Unavailable
from support.client import ChatClient


def _rpc_error(code: grpc.StatusCode, trailers: tuple[tuple[str, str], ...] = ()) -> Any:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailers), "details")


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (grpc.StatusCode.NOT_FOUND, "not_found"),
        (grpc.StatusCode.ALREADY_EXISTS, "room_exists"),
        (grpc.StatusCode.PERMISSION_DENIED, "forbidden"),
        (grpc.StatusCode.INVALID_ARGUMENT, "bad_request"),
        (grpc.StatusCode.FAILED_PRECONDITION, "internal"),
    ],
)
def test_status_fallback_without_trailer(status: grpc.StatusCode, expected: str) -> None:
    """Without a parley-code trailer the gRPC status picks the client code."""
    error = from_rpc_error(_rpc_error(status))
    assert isinstance(error, ProtocolError)
    assert error.code == expected


@pytest.mark.parametrize(
    "status",
    [
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        # gRPC's own, not a node's (nodes always send parley-code): a stream
        # whose connection reset fails "Internal error from Core"
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.CANCELLED,
    ],
)
def test_unavailable_statuses_are_retryable(status: grpc.StatusCode) -> None:
    """UNAVAILABLE, DEADLINE_EXCEEDED and transport failures are retried,
    not answered at once."""
    assert isinstance(from_rpc_error(_rpc_error(status)), Unavailable)


def test_a_nodes_internal_error_is_answered() -> None:
    """An INTERNAL the node sent (with its parley-code) is the answer."""
    error = from_rpc_error(_rpc_error(grpc.StatusCode.INTERNAL, (("parley-code", "internal"),)))
    assert isinstance(error, ProtocolError) and error.code == "internal"


def test_trailer_wins_over_status() -> None:
    """parley-code decides; not_administrator carries its hint."""
    error = from_rpc_error(
        _rpc_error(
            grpc.StatusCode.FAILED_PRECONDITION,
            (("parley-code", "not_administrator"), ("parley-administrator", "node-2")),
        )
    )
    assert isinstance(error, NotAdministrator)
    assert error.hint == "node-2"
    member = from_rpc_error(
        _rpc_error(grpc.StatusCode.FAILED_PRECONDITION, (("parley-code", "not_member"),))
    )
    assert isinstance(member, ProtocolError)
    assert member.code == "not_member"


def test_unknown_result_code_is_internal() -> None:
    """A code the protocol does not know becomes internal."""
    error = classify("exploded", "boom")
    assert isinstance(error, ProtocolError)
    assert error.code == "internal"


def _dead_address() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


async def test_unreachable_nodes_answer_unavailable_after_the_deadline() -> None:
    """With no node answering, a call gives up with unavailable at its deadline."""
    discovery = StaticDiscovery({"node-0": _dead_address(), "node-1": _dead_address()})
    pool = ChannelPool(discovery)
    health = HealthMonitor(discovery, pool)
    router = Router(discovery, pool, health, replicas=3)
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def join(node: str, budget: float) -> pb.JoinRoomResponse:
        request = pb.JoinRoomRequest(room="r", user="a")
        return await router.stub(node).JoinRoom(request, timeout=budget)

    with pytest.raises(ProtocolError) as info:
        await router.call("r", join, deadline=0.6)
    assert info.value.code == "unavailable"
    assert 0.5 <= loop.time() - started < 5
    await pool.close()


def _room_led_by(node_id: str, nodes: list[str]) -> str:
    for i in range(1000):
        room = f"room{i}"
        if replicas_for(room, nodes, 3)[0] == node_id:
            return room
    raise AssertionError("no such room")


async def _administrator_and_redirector(
    fake_nodes: Any,
) -> tuple[FakeRoomService, FakeRoomService, dict[str, str]]:
    """node-0, which holds rooms, and node-1, which names node-0 for every room."""
    admin, admin_address = await fake_nodes("node-0")
    other, other_address = await fake_nodes("node-1", redirect_to="node-0")
    return admin, other, {"node-0": admin_address, "node-1": other_address}


async def test_not_administrator_hint_is_followed(fake_nodes: Any, start_gateway: Any) -> None:
    """A node that is not the administrator names it, and the gateway goes there."""
    admin, other, nodes = await _administrator_and_redirector(fake_nodes)
    first = await start_gateway(nodes, rate_limit=1e5, rate_burst=10_000)
    second = await start_gateway(nodes, rate_limit=1e5, rate_burst=10_000)
    room = _room_led_by("node-1", list(nodes))
    async with (
        await ChatClient.connect(first.url, "alice") as alice,
        await ChatClient.connect(second.url, "alice") as alice2,
    ):
        assert (await alice.create(room))["type"] == "created"
        assert "CreateRoom" in other.calls
        assert (await alice.join(room))["type"] == "joined"
        # The second gateway has no cached administrator: its batch goes to
        # node-1 first and the item is re-routed to node-0.
        ack = await alice2.send(room, "hi", "m1")
        assert ack["type"] == "ack"
        assert "PublishStream" in other.calls
        message = await alice.next_of("message", room=room)
        assert message["seq"] == ack["seq"]
        # The first gateway learned the administrator from create: one stream, there.
        assert other.calls.count("Subscribe") == 0
        assert admin.calls.count("Subscribe") == 1


async def test_a_send_to_an_administrator_that_moved_is_rerouted_with_its_id(
    fake_nodes: Any, start_gateway: Any
) -> None:
    """Sends to a room whose administrator the gateway knows go straight into
    that node's batch (no task, no route per send). When the node has
    stopped being it, the refusal sends the message the full way, with the
    id the first try carried (made up by the gateway when the client gave
    none), so a retry cannot store it twice; a refusal the client must hear
    (not_member) is the answer."""
    old, new, nodes = await _administrator_and_redirector(fake_nodes)
    gateway = await start_gateway(nodes, rate_limit=1e5, rate_burst=10_000)
    room = _room_led_by("node-0", list(nodes))
    async with (
        await ChatClient.connect(gateway.url, "alice") as alice,
        await ChatClient.connect(gateway.url, "bob") as bob,
    ):
        assert (await alice.create(room))["type"] == "created"
        assert (await alice.send(room, "first", "m1"))["seq"] == 1  # node-0 now known
        # node-0 hands the room to node-1
        new.rooms[room] = old.rooms.pop(room)
        old.redirect_to, new.redirect_to = "node-1", None
        before = len(old.publish_ids)
        await alice.ws.send(json.dumps({"type": "send", "room": room, "text": "second"}))
        ack = await alice.next_of("ack")
        assert ack["seq"] == 2
        refused, stored = old.publish_ids[before:], new.publish_ids
        # (the full way may ask node-0 again: it is first in the placement)
        assert refused and refused[0].startswith("gw-")
        assert set(refused) == set(stored) == {refused[0]}  # one id throughout
        assert [e.text for e in new.rooms[room].entries[1:]] == ["first", "second"]
        # node-1 is known now: a non-member's send is refused by it, as before
        assert (await bob.send(room, "hi", "b1"))["code"] == "not_member"
        assert new.publish_ids[-1] == "b1"
