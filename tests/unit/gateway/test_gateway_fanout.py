"""Room feeds: backlog on join, one stream per room, resume without gaps or repeats."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway_fake_node import FakeRoomService
from parley.gateway.app import Gateway
from parley.gateway.fanout import TAIL_SIZE
from support.client import ChatClient
from support.wait import wait_for


def _seqs(client: ChatClient, room: str) -> list[int]:
    return [f["seq"] for f in client.deliveries.get(room, [])]


async def _fill(client: ChatClient, room: str, count: int) -> int:
    """Send `count` messages concurrently; return the highest seq acked."""
    acks = await asyncio.gather(*(client.send(room, f"m{i}") for i in range(count)))
    assert all(a["type"] == "ack" for a in acks)
    return max(a["seq"] for a in acks)


async def test_join_since_is_served_from_the_tail(gateway: Gateway, node: Any) -> None:
    """A join with since gets exactly the entries after it, then live ones."""
    service: FakeRoomService = node[0]
    async with (
        await ChatClient.connect(gateway.url, "alice") as alice,
        await ChatClient.connect(gateway.url, "bob") as bob,
    ):
        await alice.create("r")
        await alice.join("r")
        await bob.join("r")  # seq 1
        last = await _fill(alice, "r", 30)
        await alice.wait_deliveries("r", last)
        history_calls = service.calls.count("History")
        bob2 = await ChatClient.connect(gateway.url, "bob")
        async with bob2:
            joined = await bob2.join("r", since=10)
            assert joined["last_seq"] == last
            await bob2.wait_deliveries("r", last - 10)
            await alice.send("r", "live")
            await bob2.wait_deliveries("r", last - 9)
            assert _seqs(bob2, "r") == list(range(11, last + 2))
        assert service.calls.count("History") == history_calls
        assert service.calls.count("Subscribe") == 1


async def test_join_since_beyond_the_tail_uses_history(gateway: Gateway, node: Any) -> None:
    """Backlog older than the in-memory tail comes from History, seamlessly."""
    service: FakeRoomService = node[0]
    async with await ChatClient.connect(gateway.url, "alice") as alice:
        await alice.create("r")
        await alice.join("r")
        last = await _fill(alice, "r", TAIL_SIZE + 150)
        await alice.wait_deliveries("r", last)
        async with await ChatClient.connect(gateway.url, "alice") as again:
            await again.join("r", since=3)
            await again.wait_deliveries("r", last - 3)
            assert _seqs(again, "r") == list(range(4, last + 1))
        assert "History" in service.calls


async def test_join_without_since_gets_the_last_50(gateway: Gateway) -> None:
    """No since: the last 50 entries, then live."""
    async with await ChatClient.connect(gateway.url, "alice") as alice:
        await alice.create("r")
        last = await _fill(alice, "r", 80)
        await alice.join("r")
        await alice.wait_deliveries("r", 50)
        await alice.send("r", "live")
        await alice.wait_deliveries("r", 51)
        assert _seqs(alice, "r") == list(range(last - 49, last + 2))


async def test_join_while_messages_flow_has_no_gap_or_repeat(gateway: Gateway) -> None:
    """Joining with since=0 during a stream of sends sees every seq exactly once."""
    async with (
        await ChatClient.connect(gateway.url, "alice") as alice,
        await ChatClient.connect(gateway.url, "bob") as bob,
    ):
        await alice.create("r")
        await alice.join("r")
        await bob.join("r")
        await _fill(alice, "r", 300)
        sender = asyncio.create_task(_fill(alice, "r", 200))
        async with await ChatClient.connect(gateway.url, "bob") as late:
            await late.join("r", since=0)
            last = await sender
            await late.wait_deliveries("r", last)
            assert _seqs(late, "r") == list(range(1, last + 1))


async def test_one_subscribe_per_room(gateway: Gateway, node: Any) -> None:
    """Many local sockets in a room share one Subscribe stream."""
    service: FakeRoomService = node[0]
    async with await ChatClient.connect(gateway.url, "alice") as alice:
        await alice.create("r")
        clients = [await ChatClient.connect(gateway.url, "alice") for _ in range(5)]
        for client in clients:
            await client.join("r")
        ack = await alice.send("r", "to all")
        for client in clients:
            await client.wait_deliveries("r", 1)
            assert _seqs(client, "r") == [ack["seq"]]
        assert service.calls.count("Subscribe") == 1
        for client in clients:
            await client.close()
        await wait_for(lambda: gateway._fanout.feed("r") is None, 5, message="feed closed")


async def test_feed_resumes_after_stream_failure(gateway: Gateway, node: Any) -> None:
    """A failed Subscribe is reopened at last_seq + 1: no gap, no repeat."""
    service: FakeRoomService = node[0]
    service.fail_next_subscribe_after = 5
    async with await ChatClient.connect(gateway.url, "alice") as alice:
        await alice.create("r")
        await alice.join("r")
        last = await _fill(alice, "r", 20)
        await alice.wait_deliveries("r", last)
        await alice.send("r", "after")
        await alice.wait_deliveries("r", last + 1)
        assert _seqs(alice, "r") == list(range(1, last + 2))
        assert len(service.subscribes) >= 2
        # Resumed after what the first stream delivered (its backlog may have
        # carried more than five entries in one batch).
        assert 6 <= service.subscribes[1].from_seq <= last
        assert service.subscribes[1].online_users == ["alice"]


async def test_publishes_are_batched(gateway: Gateway, node: Any) -> None:
    """Concurrent sends share batches."""
    service: FakeRoomService = node[0]
    async with await ChatClient.connect(gateway.url, "alice") as alice:
        await alice.create("r")
        await _fill(alice, "r", 200)
        assert sum(service.batch_sizes) == 200
        assert len(service.batch_sizes) < 200
        assert max(service.batch_sizes) <= 256


async def test_publishes_travel_on_one_stream(gateway: Gateway, node: Any) -> None:
    """Batches go on one PublishStream, not a call each."""
    service: FakeRoomService = node[0]
    async with await ChatClient.connect(gateway.url, "alice") as alice:
        await alice.create("r")
        await _fill(alice, "r", 50)
        assert service.calls.count("PublishStream") == 1
        assert "PublishBatch" not in service.calls


async def test_a_node_without_the_stream_gets_publish_batch_calls(
    gateway: Gateway, node: Any
) -> None:
    """A node of the previous release (no PublishStream) is sent PublishBatch
    calls instead, the first batch included: nothing fails on the way."""
    service: FakeRoomService = node[0]
    service.streams = False
    async with await ChatClient.connect(gateway.url, "alice") as alice:
        await alice.create("r")
        await _fill(alice, "r", 50)
        assert "PublishStream" not in service.calls
        assert "PublishBatch" in service.calls
        assert sum(service.batch_sizes) == 50


async def test_joining_again_on_a_connection_restarts_its_backlog(
    gateway: Gateway, node: Any
) -> None:
    """A second join on the same connection replays from its since, with no presence churn."""
    service: FakeRoomService = node[0]
    async with await ChatClient.connect(gateway.url, "alice") as alice:
        await alice.create("r")
        await alice.join("r")
        last = await _fill(alice, "r", 5)
        await alice.wait_deliveries("r", last)
        await alice.join("r", since=2)
        await alice.wait_deliveries("r", last + last - 2)
        await alice.send("r", "live")
        await alice.wait_deliveries("r", 2 * last - 1)
        assert _seqs(alice, "r") == [*range(1, last + 1), *range(3, last + 2)]
        feed = gateway._fanout.feed("r")
        assert feed is not None
        assert feed.users == {"alice": 1}
        changes = [(c.user, c.online) for u in service.presence_updates for c in u.changes]
        assert changes == [("alice", True)]


async def _join_storm(gateway: Gateway, count: int) -> list[dict[str, Any]]:
    """`count` users connect, then all join room r at once."""
    clients = [await ChatClient.connect(gateway.url, f"u{i}") for i in range(count)]
    try:
        return await asyncio.gather(*(c.join("r") for c in clients))
    finally:
        await asyncio.gather(*(c.close() for c in clients))


async def test_joins_at_once_share_join_rooms_calls(gateway: Gateway, node: Any) -> None:
    """A join storm travels in JoinRooms batches, each join answered as
    alone; a user already a member appends nothing."""
    service: FakeRoomService = node[0]
    async with await ChatClient.connect(gateway.url, "alice") as alice:
        await alice.create("r")
        answers = await _join_storm(gateway, 40)
        assert [a["type"] for a in answers] == ["joined"] * 40
        assert sum(service.join_batches or []) == 40
        assert len(service.join_batches or []) < 40
        assert "JoinRoom" not in service.calls
        assert len(service.rooms["r"].members) == 41
        again = await alice.join("r")
        assert again["type"] == "joined"
        assert len(service.rooms["r"].entries) == 41  # create + 40 joins
        assert (await alice.join("nope"))["code"] == "not_found"


async def test_a_node_without_join_rooms_gets_join_room_calls(gateway: Gateway, node: Any) -> None:
    """A node of the previous release (no JoinRooms) is sent a JoinRoom call
    per join, the first batch's included: nothing fails on the way."""
    service: FakeRoomService = node[0]
    service.join_batches = None
    async with await ChatClient.connect(gateway.url, "alice") as alice:
        await alice.create("r")
        answers = await _join_storm(gateway, 10)
        assert [a["type"] for a in answers] == ["joined"] * 10
        assert "JoinRooms" not in service.calls
        assert service.calls.count("JoinRoom") == 10
