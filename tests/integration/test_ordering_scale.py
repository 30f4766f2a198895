"""Total order per room (DESIGN §8 invariant 1) across gateways, from two users to a thousand."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from support.client import ChatClient, Frame
from support.cluster import LocalCluster

ROOMS = 50
USERS_PER_ROOM = 20
MESSAGES_PER_USER = 3
CONNECT_CONCURRENCY = 64
"""Handshakes in flight at once while a thousand clients connect."""
SLOW = 60.0
"""Seconds any one request or wait may take while a thousand clients share two cores."""


def _seqs(frames: list[Frame]) -> list[int]:
    return [f["seq"] for f in frames]


def _key(frame: Frame) -> tuple[Any, ...]:
    """What two subscribers must agree on about one entry."""
    return tuple(frame.get(k) for k in ("type", "seq", "from", "text", "user", "event"))


def _check_room(room: str, members: list[ChatClient], acks: list[tuple[str, Frame]]) -> None:
    """Invariant 1 and exactly-once delivery of every ack, for one room's subscribers.

    Args:
        room: the room.
        members: every client subscribed to it (each joined with since=0).
        acks: (text, ack frame) of every send into the room.
    """
    assert all(ack["type"] == "ack" and ack["room"] == room for _, ack in acks), acks
    reference = members[0].deliveries.get(room, [])
    last = max(ack["seq"] for _, ack in acks)
    assert _seqs(reference) == list(range(1, last + 1)), (room, _seqs(reference))
    for client in members:
        delivered = client.deliveries.get(room, [])
        assert list(map(_key, delivered)) == list(map(_key, reference)), (
            f"{client.user} in {room} saw another order"
        )
        # Nothing from any other room reached this client.
        assert set(client.deliveries) == {room}, (client.user, sorted(client.deliveries))
        foreign = [f for f in client.frames if "room" in f and f["room"] != room]
        assert not foreign, (client.user, foreign[:3])
        assert not [f for f in client.frames if f.get("type") == "error"], client.user
    by_seq = {f["seq"]: f for f in reference}
    texts = [f["text"] for f in reference if f["type"] == "message"]
    assert len(texts) == len(set(texts)), f"a message was delivered twice in {room}"
    for text, ack in acks:
        entry = by_seq[ack["seq"]]
        assert (entry["type"], entry["text"]) == ("message", text), (ack, entry)
    assert len(texts) == len(acks), (room, len(texts), len(acks))


async def test_two_gateways_concurrent_senders_see_one_order(make_cluster: Any) -> None:
    """Two users on different gateways send at once; both see one order and their acks' seqs."""
    cluster: LocalCluster = await make_cluster(nodes=3, gateways=2)
    async with (
        await ChatClient.connect(cluster.gateway_url(0), "alice") as alice,
        await ChatClient.connect(cluster.gateway_url(1), "bob") as bob,
    ):
        assert (await alice.create("r"))["type"] == "created"
        await alice.join("r", since=0)
        await bob.join("r", since=0)
        await alice.wait_deliveries("r", 1)

        async def burst(client: ChatClient) -> list[tuple[str, Frame]]:
            texts = [f"{client.user}-{i}" for i in range(40)]
            acks = await asyncio.gather(
                *(client.send("r", text, f"{client.user}{i}") for i, text in enumerate(texts))
            )
            return list(zip(texts, acks, strict=True))

        sent = await asyncio.gather(burst(alice), burst(bob))
        acks = [*sent[0], *sent[1]]
        last = max(ack["seq"] for _, ack in acks)
        assert last == 1 + len(acks)  # bob's join, then every message once
        for client in (alice, bob):
            await client.wait_deliveries("r", last, timeout=30)
        _check_room("r", [alice, bob], acks)
        # Both users' messages made it into the one order, interleaved or not.
        assert {f["from"] for f in alice.messages("r")} == {"alice", "bob"}


async def _bounded(limit: int, jobs: list[Callable[[], Awaitable[Any]]]) -> list[Any]:
    """Run `jobs` concurrently, at most `limit` at a time, and return their results in order."""
    gate = asyncio.Semaphore(limit)

    async def run(job: Callable[[], Awaitable[Any]]) -> Any:
        async with gate:
            return await job()

    return await asyncio.gather(*(run(job) for job in jobs))


@pytest.mark.slow
async def test_fifty_rooms_of_twenty_users_across_two_gateways(make_cluster: Any) -> None:
    """50 rooms x 20 users on 2 gateways: per room one order, every ack delivered once, no leaks."""
    cluster: LocalCluster = await make_cluster(nodes=3, gateways=2)
    rooms = [f"room-{r:02d}" for r in range(ROOMS)]
    # User u of room r sits on gateway (r + u) % 2, so every room spans both gateways.
    plan = [(room, f"u{r:02d}-{u:02d}", (r + u) % 2) for r, room in enumerate(rooms)
            for u in range(USERS_PER_ROOM)]  # fmt: skip
    opened: list[ChatClient] = []

    async def connect(user: str, gateway: int) -> ChatClient:
        client = await ChatClient.connect(cluster.gateway_url(gateway), user, open_timeout=60)
        opened.append(client)
        return client

    try:
        clients: list[ChatClient] = await _bounded(
            CONNECT_CONCURRENCY,
            [lambda user=user, gw=gw: connect(user, gw) for _, user, gw in plan],
        )
        members: dict[str, list[ChatClient]] = {room: [] for room in rooms}
        for (room, _, _), client in zip(plan, clients, strict=True):
            members[room].append(client)

        created = await asyncio.gather(
            *(members[room][0].request({"type": "create", "room": room}, SLOW) for room in rooms)
        )
        assert [c["type"] for c in created] == ["created"] * ROOMS, created
        joined = await asyncio.gather(
            *(
                client.request({"type": "join", "room": room, "since": 0}, SLOW)
                for (room, _, _), client in zip(plan, clients, strict=True)
            )
        )
        refused = [j for j in joined if j["type"] != "joined"]
        assert not refused, refused[:3]

        async def chat(room: str, client: ChatClient) -> list[tuple[str, Frame]]:
            out = []
            for i in range(MESSAGES_PER_USER):
                text = f"{client.user}/{i}"
                frame = {"type": "send", "room": room, "text": text, "id": f"m{i}"}
                out.append((text, await client.request(frame, SLOW)))
            return out

        results = await asyncio.gather(
            *(chat(room, client) for (room, _, _), client in zip(plan, clients, strict=True))
        )
        acks: dict[str, list[tuple[str, Frame]]] = {room: [] for room in rooms}
        for (room, _, _), sent in zip(plan, results, strict=True):
            acks[room].extend(sent)

        expected = USERS_PER_ROOM - 1 + USERS_PER_ROOM * MESSAGES_PER_USER
        for room in rooms:
            assert max(ack["seq"] for _, ack in acks[room]) == expected, room
        await asyncio.gather(
            *(
                client.wait_deliveries(room, expected, timeout=SLOW)
                for (room, _, _), client in zip(plan, clients, strict=True)
            )
        )
        for room in rooms:
            _check_room(room, members[room], acks[room])
    finally:
        await asyncio.gather(*(client.close() for client in opened), return_exceptions=True)
