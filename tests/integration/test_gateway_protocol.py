"""The client protocol (DESIGN §5) end to end: real node and gateway processes."""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Any

import jwt
import pytest
from support.client import ChatClient
from support.cluster import LocalCluster
from support.wait import wait_for
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

SECRET = "integration-secret-of-at-least-32-bytes"


def _seqs(client: ChatClient, room: str) -> list[int]:
    return [f["seq"] for f in client.deliveries.get(room, [])]


def _event(user: str, event: str) -> Any:
    return lambda f: f.get("user") == user and f.get("event") == event


async def _handshake_status(url: str) -> int:
    with pytest.raises(InvalidStatus) as info:
        async with connect(url, open_timeout=10):
            pass
    return info.value.response.status_code


async def test_every_request_type(cluster: LocalCluster) -> None:
    """ping, rooms, create, join, send, history, members, leave and delete answer per §5."""
    url = cluster.gateway_url()
    async with (
        await ChatClient.connect(url, "alice") as alice,
        await ChatClient.connect(url, "bob") as bob,
    ):
        assert await alice.request({"type": "ping", "id": "p1"}) == {"type": "pong", "id": "p1"}
        assert (await alice.rooms())["rooms"] == []

        created = await alice.request({"type": "create", "room": "general", "id": "c1"})
        assert created == {"type": "created", "id": "c1", "room": "general", "owner": "alice"}

        joined = await alice.join("general")
        assert (joined["type"], joined["room"], joined["last_seq"]) == ("joined", "general", 0)
        assert joined["members"] == ["alice"]

        bob_joined = await bob.join("general")
        assert bob_joined["last_seq"] == 1
        assert bob_joined["members"] == ["alice", "bob"]
        join_entry = await alice.next_of("presence", room="general", where=_event("bob", "join"))
        assert join_entry["seq"] == 1
        assert join_entry["ts"].endswith("Z")
        await alice.next_of("presence", room="general", where=_event("bob", "online"))

        ack = await alice.send("general", "hello", "m1")
        assert ack == {"type": "ack", "id": "m1", "room": "general", "seq": 2}
        assert (await alice.send("general", "hello", "m1"))["seq"] == 2  # same id, same seq
        for client in (alice, bob):
            message = await client.next_of("message", room="general")
            assert {k: message[k] for k in ("type", "room", "seq", "from", "text")} == {
                "type": "message", "room": "general", "seq": 2, "from": "alice",
                "text": "hello"}  # fmt: skip

        history = await bob.history("general")
        assert history["type"] == "history"
        assert [(m["type"], m["seq"]) for m in history["messages"]] == [
            ("presence", 1), ("message", 2)]  # fmt: skip
        assert [
            m["seq"] for m in (await bob.history("general", before=2, limit=1))["messages"]
        ] == [1]

        members = await alice.members("general")
        assert members["members"] == [
            {"user": "alice", "online": True}, {"user": "bob", "online": True}]  # fmt: skip

        rooms = await bob.rooms()
        assert len(rooms["rooms"]) == 1
        info = rooms["rooms"][0]
        assert {k: info[k] for k in ("room", "owner", "members", "last_seq")} == {
            "room": "general", "owner": "alice", "members": 2, "last_seq": 2}  # fmt: skip
        assert info["administrator"] in cluster.node_ids

        assert await bob.request({"type": "leave", "room": "general", "id": "l1"}) == {
            "type": "left", "id": "l1", "room": "general"}  # fmt: skip
        leave = await alice.next_of("presence", room="general", where=_event("bob", "leave"))
        assert leave["seq"] == 3

        deleted = await alice.request({"type": "delete", "room": "general", "id": "d1"})
        assert deleted == {"type": "deleted", "id": "d1", "room": "general"}
        assert (await alice.rooms())["rooms"] == []
        assert _seqs(alice, "general") == [1, 2, 3]
        # The leaver sees every entry up to and including its own leave.
        assert _seqs(bob, "general") == [1, 2, 3]


async def test_every_error_code_a_client_can_cause(cluster: LocalCluster) -> None:
    """bad_request, too_large, not_found, room_exists, not_member and forbidden."""
    url = cluster.gateway_url()
    async with (
        await ChatClient.connect(url, "alice") as alice,
        await ChatClient.connect(url, "bob") as bob,
    ):
        await alice.send_frame("{not json")
        assert (await alice.next_of("error"))["code"] == "bad_request"
        bad = await alice.request({"type": "join", "room": "No Such Name", "id": "b1"})
        assert (bad["type"], bad["id"], bad["code"]) == ("error", "b1", "bad_request")
        assert isinstance(bad["message"], str)
        await alice.create("r")
        long = await alice.request({"type": "send", "room": "r", "text": "x" * 4001})
        assert long["code"] == "too_large"
        assert (await bob.create("r"))["code"] == "room_exists"
        assert (await bob.join("missing"))["code"] == "not_found"
        assert (await bob.send("missing", "x"))["code"] == "not_found"
        assert (await bob.send("r", "x"))["code"] == "not_member"
        assert (await bob.history("r"))["code"] == "not_member"
        await bob.join("r")
        assert (await bob.delete("r"))["code"] == "forbidden"
        # Every error left the connections usable.
        assert (await alice.ping())["type"] == "pong"
        assert (await bob.ping())["type"] == "pong"


async def test_delete_and_presence_across_gateways(make_cluster: Any) -> None:
    """Members on another gateway see online/offline and get `deleted`."""
    cluster = await make_cluster(nodes=3, gateways=2)
    async with (
        await ChatClient.connect(cluster.gateway_url(0), "alice") as alice,
        await ChatClient.connect(cluster.gateway_url(1), "bob") as bob,
    ):
        await alice.create("r")
        await alice.join("r")
        await bob.join("r")
        await alice.next_of("presence", room="r", where=_event("bob", "online"))
        # Who was online before bob joined is what `members` says.
        assert {"user": "alice", "online": True} in (await bob.members("r"))["members"]
        carol = await ChatClient.connect(cluster.gateway_url(1), "carol")
        await carol.join("r")
        await alice.next_of("presence", room="r", where=_event("carol", "online"))
        await carol.close()  # closing is not leaving: only offline
        await alice.next_of("presence", room="r", where=_event("carol", "offline"))
        members = {m["user"]: m["online"] for m in (await alice.members("r"))["members"]}
        assert members == {"alice": True, "bob": True, "carol": False}
        assert (await alice.delete("r"))["type"] == "deleted"
        assert await bob.next_of("deleted", room="r") == {"type": "deleted", "room": "r"}


async def test_large_rooms_announce_no_online_or_offline(make_cluster: Any) -> None:
    """Above the presence limit a room sends no online/offline frames (a
    reconnect storm would square them); `members` still says who is online."""
    cluster = await make_cluster(nodes=3, gateways=1, extra_env={"PARLEY_PRESENCE_LIMIT": "2"})
    url = cluster.gateway_url()
    async with (
        await ChatClient.connect(url, "alice") as alice,
        await ChatClient.connect(url, "bob") as bob,
        await ChatClient.connect(url, "carol") as carol,
    ):
        await alice.create("r")
        await alice.join("r")
        await bob.join("r")  # two members: small
        await alice.next_of("presence", room="r", where=_event("bob", "online"))
        await carol.join("r")  # three: large
        await alice.next_of("presence", room="r", where=_event("carol", "join"))

        async def members_say(user: str, online: bool) -> None:
            async def said() -> bool:
                members = {m["user"]: m["online"] for m in (await alice.members("r"))["members"]}
                return members.get(user) is online

            await wait_for(said, timeout=10, message=f"{user} online={online} in members")

        await members_say("carol", True)
        # the node had carol online before this message: an event would come first
        await bob.send("r", "after carol", "m1")
        await alice.next_of("message", room="r", where=lambda f: f.get("text") == "after carol")
        await bob.close()  # offline: not announced either
        await members_say("bob", False)
        await carol.send("r", "after bob", "m2")
        await alice.next_of("message", room="r", where=lambda f: f.get("text") == "after bob")
        events = [
            f
            for f in alice.frames
            if f.get("type") == "presence" and "seq" not in f and f.get("user") != "alice"
        ]
        assert [(f["user"], f["event"]) for f in events] == [("bob", "online")]


async def test_reconnect_with_since_misses_nothing(make_cluster: Any) -> None:
    """A client that reconnects with since gets exactly the entries it missed, then live."""
    cluster = await make_cluster(nodes=3, gateways=2)
    async with await ChatClient.connect(cluster.gateway_url(0), "alice") as alice:
        await alice.create("r")
        await alice.join("r")
        async with await ChatClient.connect(cluster.gateway_url(1), "bob") as bob:
            await bob.join("r")
            await bob.wait_deliveries("r", 1)
        acks = await asyncio.gather(*(alice.send("r", f"m{i}") for i in range(80)))
        last = max(a["seq"] for a in acks)
        async with await ChatClient.connect(cluster.gateway_url(1), "bob") as bob:
            await bob.join("r", since=1)
            await bob.wait_deliveries("r", last - 1, timeout=20)
            await alice.send("r", "live")
            await bob.wait_deliveries("r", last, timeout=20)
            assert _seqs(bob, "r") == list(range(2, last + 2))


async def test_limits_close_abusers(make_cluster: Any) -> None:
    """rate_limited errors, then 1008 for a flood; 1009 for an oversized frame."""
    cluster = await make_cluster(
        nodes=1, replicas=1,
        gateway_args=["--rate-limit", "1", "--rate-burst", "3", "--max-frame-bytes", "2048"],
    )  # fmt: skip
    url = cluster.gateway_url()
    async with await ChatClient.connect(url, "alice") as alice:
        for i in range(5):
            await alice.send_frame({"type": "ping", "id": f"p{i}"})
        await wait_for(lambda: len(alice.frames) >= 5, 10, message="5 replies")
        codes = [f.get("code") for f in alice.frames if f["type"] == "error"]
        assert codes and set(codes) == {"rate_limited"}
        for _ in range(100):
            if alice.closed.is_set():
                break
            await alice.send_frame({"type": "ping"})
        await asyncio.wait_for(alice.closed.wait(), 10)
        assert alice.close_code == 1008
    async with await ChatClient.connect(url, "alice") as alice:
        await alice.send_frame(json.dumps({"type": "ping", "pad": "x" * 4096}))
        await asyncio.wait_for(alice.closed.wait(), 10)
        assert alice.close_code == 1009


async def test_handshake_401_and_jwt(make_cluster: Any) -> None:
    """With a JWT secret only a valid HS256 token connects; everything else is 401."""
    cluster = await make_cluster(nodes=1, replicas=1, jwt_secret=SECRET)
    url = cluster.gateway_url()
    token = jwt.encode({"sub": "alice"}, SECRET, algorithm="HS256")
    async with await ChatClient.connect(url, token=token) as alice:
        assert (await alice.create("r"))["owner"] == "alice"
    assert await _handshake_status(url + "?user=alice") == 401
    assert await _handshake_status(url + "?token=garbage") == 401
    forged = jwt.encode({"sub": "alice"}, "another-secret-of-at-least-32-bytes", algorithm="HS256")
    assert await _handshake_status(url + "?token=" + forged) == 401
    assert await _handshake_status(url.removesuffix("/ws") + "/nope?token=" + token) == 404


async def test_unavailable_when_no_node_answers(make_cluster: Any) -> None:
    """With every node gone, a request is answered `unavailable` and the socket lives."""
    cluster = await make_cluster(nodes=1, replicas=1)
    async with await ChatClient.connect(cluster.gateway_url(), "alice") as alice:
        await alice.create("r")
        cluster.kill_node("node-0")
        reply = await alice.request({"type": "send", "room": "r", "text": "x"}, timeout=30)
        assert reply["code"] == "unavailable"
        assert (await alice.ping())["type"] == "pong"


async def test_sigterm_closes_sockets_with_1001_and_exits_0(cluster: LocalCluster) -> None:
    """SIGTERM: sockets are closed with 1001 (going away) and the gateway exits 0."""
    async with await ChatClient.connect(cluster.gateway_url(), "alice") as alice:
        assert (await alice.ping())["type"] == "pong"
        cluster.kill_gateway(0, signal.SIGTERM)
        await asyncio.wait_for(alice.closed.wait(), 10)
        assert alice.close_code == 1001
    assert await cluster.wait_exit("gateway-0") == 0


async def test_administrator_failover_keeps_every_seq_once(cluster: LocalCluster) -> None:
    """When the room's administrator dies, sends resume and subscribers miss nothing."""
    url = cluster.gateway_url()
    async with (
        await ChatClient.connect(url, "alice") as alice,
        await ChatClient.connect(url, "bob") as bob,
    ):
        await alice.create("r")
        await alice.join("r")
        await bob.join("r")
        for i in range(20):
            assert (await alice.send("r", f"before{i}", f"b{i}"))["type"] == "ack"
        admin = (await alice.rooms())["rooms"][0]["administrator"]
        cluster.kill_node(admin)
        acks = [await alice.send("r", f"after{i}", f"a{i}") for i in range(20)]
        assert [a["type"] for a in acks] == ["ack"] * 20, acks
        last = acks[-1]["seq"]
        for client in (alice, bob):
            await client.wait_deliveries("r", last, timeout=30)
            assert _seqs(client, "r") == list(range(1, last + 1))
        assert (await alice.rooms())["rooms"][0]["administrator"] != admin
