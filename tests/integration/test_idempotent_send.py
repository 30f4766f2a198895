"""Idempotent sends (DESIGN §3 de-duplication, §8 invariant 3): a retried id is stored once."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from support.client import ChatClient, Frame
from support.cluster import LocalCluster
from support.wait import wait_for

FAILOVER_DEADLINE = 60.0
"""Seconds a retry may keep failing while a new administrator is elected."""


def _messages(history: Frame) -> list[Frame]:
    assert history["type"] == "history", history
    return [m for m in history["messages"] if m["type"] == "message"]


async def _ack_eventually(client: ChatClient, frame: Frame, deadline: float) -> Frame:
    """Send `frame` until it is acked, retrying `unavailable` replies and timeouts."""
    last: Any = None
    while time.monotonic() < deadline:
        try:
            reply = await client.request(frame, timeout=15)
        except TimeoutError as error:
            last = error
            continue
        if reply["type"] == "ack":
            return reply
        assert reply.get("code") == "unavailable", reply
        last = reply
        await asyncio.sleep(0.2)  # backoff between retries, not synchronization
    raise AssertionError(f"{frame!r} not acked before the deadline (last: {last!r})")


async def test_retry_same_id_same_seq_stored_once(cluster: LocalCluster) -> None:
    """Resending an id returns its first seq; history and deliveries hold it once."""
    url = cluster.gateway_url()
    async with (
        await ChatClient.connect(url, "alice") as alice,
        await ChatClient.connect(url, "bob") as bob,
    ):
        await alice.create("r")
        await alice.join("r", since=0)
        await bob.join("r", since=0)
        first = await alice.send("r", "hello", "m1")
        assert first["type"] == "ack"
        # Sequential retries, then a burst of concurrent ones, all with the same id.
        again = [await alice.send("r", "hello", "m1") for _ in range(3)]
        # (Sent raw: the test client matches replies by id, one pending request per id.)
        for _ in range(10):
            await alice.send_frame({"type": "send", "room": "r", "text": "hello", "id": "m1"})
        replies = await wait_for(
            lambda: (
                [f for f in alice.frames if f.get("id") == "m1"][-10:]
                if sum(f.get("id") == "m1" for f in alice.frames) >= 14
                else None
            ),
            20,
            message="ten replies to the pipelined retries",
        )
        again += replies
        assert {a["seq"] for a in again} == {first["seq"]}, again
        # A retry whose text differs is still the same message: the first answer wins.
        assert (await alice.send("r", "changed", "m1"))["seq"] == first["seq"]
        marker = await alice.send("r", "after", "m2")
        assert marker["seq"] == first["seq"] + 1
        for client in (alice, bob):
            await client.wait_deliveries("r", marker["seq"], timeout=20)
            texts = [m["text"] for m in client.messages("r")]
            assert texts == ["hello", "after"], (client.user, texts)
        assert [(m["seq"], m["text"]) for m in _messages(await bob.history("r"))] == [
            (first["seq"], "hello"),
            (marker["seq"], "after"),
        ]


async def test_same_id_from_two_users_is_two_messages(make_cluster: Any) -> None:
    """An id is scoped to its user: alice's m1 and bob's m1 are two messages."""
    cluster = await make_cluster(nodes=3, gateways=2)
    async with (
        await ChatClient.connect(cluster.gateway_url(0), "alice") as alice,
        await ChatClient.connect(cluster.gateway_url(1), "bob") as bob,
    ):
        await alice.create("r")
        await alice.join("r", since=0)
        await bob.join("r", since=0)
        a, b = await asyncio.gather(alice.send("r", "from a", "m1"), bob.send("r", "from b", "m1"))
        assert (a["type"], b["type"]) == ("ack", "ack")
        assert a["seq"] != b["seq"]
        # Each user's retry still maps to its own message.
        assert (await alice.send("r", "from a", "m1"))["seq"] == a["seq"]
        assert (await bob.send("r", "from b", "m1"))["seq"] == b["seq"]
        stored = {(m["from"], m["text"], m["seq"]) for m in _messages(await alice.history("r"))}
        assert stored == {("alice", "from a", a["seq"]), ("bob", "from b", b["seq"])}
        await alice.wait_deliveries("r", max(a["seq"], b["seq"]), timeout=20)
        assert len(alice.messages("r")) == 2


async def test_retry_after_reconnect_returns_the_original_seq(make_cluster: Any) -> None:
    """A new connection of the same user, on either gateway, retrying an id gets its first seq."""
    cluster = await make_cluster(nodes=3, gateways=2)
    async with await ChatClient.connect(cluster.gateway_url(0), "alice") as alice:
        await alice.create("r")
        await alice.join("r", since=0)
        first = await alice.send("r", "once", "m1")
        assert first["type"] == "ack"
    for gateway in (0, 1):
        async with await ChatClient.connect(cluster.gateway_url(gateway), "alice") as alice:
            # Without joining first: membership is persistent, the send is allowed.
            assert (await alice.send("r", "once", "m1"))["seq"] == first["seq"]
            await alice.join("r", since=0)
            assert (await alice.send("r", "once", "m1"))["seq"] == first["seq"]
            messages = _messages(await alice.history("r"))
            assert [(m["seq"], m["text"]) for m in messages] == [(first["seq"], "once")]


async def test_retry_across_administrator_failover_returns_the_original_seq(
    cluster: LocalCluster,
) -> None:
    """SIGKILL the room's administrator; retrying acked ids via the gateway returns their seqs."""
    url = cluster.gateway_url()
    async with (
        await ChatClient.connect(url, "alice") as alice,
        await ChatClient.connect(url, "bob") as bob,
    ):
        await alice.create("r")
        await alice.join("r", since=0)
        await bob.join("r", since=0)
        acked = {f"m{i}": await alice.send("r", f"text {i}", f"m{i}") for i in range(10)}
        assert all(a["type"] == "ack" for a in acked.values()), acked
        admin = (await alice.rooms())["rooms"][0]["administrator"]
        assert admin in cluster.node_ids
        cluster.kill_node(admin)

        deadline = time.monotonic() + FAILOVER_DEADLINE
        for msg_id, ack in acked.items():
            frame = {"type": "send", "room": "r", "text": f"text {msg_id[1:]}", "id": msg_id}
            retried = await _ack_eventually(alice, frame, deadline)
            assert retried["seq"] == ack["seq"], (msg_id, ack, retried)
        new = await _ack_eventually(
            alice, {"type": "send", "room": "r", "text": "new", "id": "new"}, deadline
        )
        assert new["seq"] == max(a["seq"] for a in acked.values()) + 1

        async def new_administrator() -> bool:
            rooms = (await alice.rooms()).get("rooms", [])
            return bool(rooms) and rooms[0]["administrator"] not in ("", admin)

        await wait_for(new_administrator, 30, interval=0.2, message="a new administrator")
        stored = _messages(await bob.history("r"))
        assert [m["text"] for m in stored] == [*(f"text {i}" for i in range(10)), "new"]
        for client in (alice, bob):
            await client.wait_deliveries("r", new["seq"], timeout=30)
            assert [f["seq"] for f in client.deliveries["r"]] == list(range(1, new["seq"] + 1))


async def test_in_flight_sends_during_failover_are_stored_once(cluster: LocalCluster) -> None:
    """Sends cut off by an administrator's SIGKILL, retried until acked, are each stored once."""
    url = cluster.gateway_url()
    async with await ChatClient.connect(url, "alice") as alice:
        await alice.create("r")
        await alice.join("r", since=0)
        assert (await alice.send("r", "warm-up", "w"))["type"] == "ack"
        admin = (await alice.rooms())["rooms"][0]["administrator"]
        ids = [f"f{i}" for i in range(40)]
        frames = {i: {"type": "send", "room": "r", "text": f"text {i}", "id": i} for i in ids}
        # Pipeline every send, and kill the administrator while they are in flight.
        for frame in frames.values():
            await alice.send_frame(frame)
        cluster.kill_node(admin)
        deadline = time.monotonic() + FAILOVER_DEADLINE
        first: dict[str, int] = {}
        await wait_for(
            lambda: all(
                any(f.get("id") == i and f["type"] in ("ack", "error") for f in alice.frames)
                for i in ids
            ),
            FAILOVER_DEADLINE,
            message="a reply to every pipelined send",
        )
        for frame in alice.frames:
            if frame.get("type") == "ack" and frame.get("id") in frames:
                first.setdefault(frame["id"], frame["seq"])
        retried = {i: (await _ack_eventually(alice, frames[i], deadline))["seq"] for i in ids}
        for msg_id, seq in first.items():
            assert retried[msg_id] == seq, (msg_id, seq, retried[msg_id])
        assert len(set(retried.values())) == len(ids)
        texts = [m["text"] for m in _messages(await alice.history("r", limit=500))]
        assert sorted(texts) == sorted(["warm-up", *(f"text {i}" for i in ids)]), texts
        last = max(retried.values())
        await alice.wait_deliveries("r", last, timeout=30)
        assert [f["seq"] for f in alice.deliveries["r"]] == list(range(1, last + 1))
