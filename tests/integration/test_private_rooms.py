"""Private rooms, invitations, direct messages, typing, read markers and
mentions over real WebSockets, with users on two gateways."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from support.client import ChatClient, Frame
from support.cluster import LocalCluster
from support.wait import wait_for


@pytest.fixture
async def two_gateways(make_cluster: Callable[..., Awaitable[LocalCluster]]) -> LocalCluster:
    return await make_cluster(nodes=3, gateways=2)


def _listed(rooms: Frame) -> dict[str, Frame]:
    return {r["room"]: r for r in rooms["rooms"]}


async def test_a_private_room_is_hidden_from_everyone_but_members_and_invitees(
    two_gateways: LocalCluster,
) -> None:
    cluster = two_gateways
    async with (
        await ChatClient.connect(cluster.gateway_url(0), "alice") as alice,
        await ChatClient.connect(cluster.gateway_url(1), "bob") as bob,
        await ChatClient.connect(cluster.gateway_url(1), "eve") as eve,
    ):
        created = await alice.request({"type": "create", "room": "secret", "private": True})
        assert created["type"] == "created"
        await alice.create("open")
        assert (await alice.send("secret", "for members"))["type"] == "ack"

        # eve sees nothing of it: not listed, and every request is not_found
        assert "secret" not in _listed(await eve.rooms()) and "open" in _listed(await eve.rooms())
        assert (await eve.join("secret"))["code"] == "not_found"
        assert (await eve.history("secret"))["code"] == "not_found"
        assert (await eve.members("secret"))["code"] == "not_found"
        assert (await eve.send("secret", "let me in"))["code"] == "not_found"
        invite = {"type": "invite", "room": "secret", "user": "bob"}
        assert (await eve.request(invite))["code"] == "not_found"

        # a member invites bob (on the other gateway), who hears of it and joins
        answer = await alice.request(invite)
        assert answer == {**answer, "type": "invited", "room": "secret", "user": "bob"}
        note = await bob.next_of("invitation")
        assert note["room"] == "secret" and note["from"] == "alice"
        joined = await bob.join("secret", since=0)
        assert joined["type"] == "joined" and "bob" in joined["members"]
        listed = _listed(await bob.rooms())["secret"]
        assert listed["private"] is True
        assert "secret" not in _listed(await eve.rooms())


async def test_a_direct_message_room_is_for_its_two_users(two_gateways: LocalCluster) -> None:
    cluster = two_gateways
    async with (
        await ChatClient.connect(cluster.gateway_url(0), "alice") as alice,
        await ChatClient.connect(cluster.gateway_url(1), "bob") as bob,
        await ChatClient.connect(cluster.gateway_url(0), "eve") as eve,
    ):
        opened = await alice.request({"type": "dm", "user": "bob"})
        assert opened["type"] == "joined" and opened["dm"] is True and opened["with"] == "bob"
        assert sorted(opened["members"]) == ["alice", "bob"]
        room = opened["room"]
        # bob opens the same room from his side
        again = await bob.request({"type": "dm", "user": "alice"})
        assert again["room"] == room and again["with"] == "alice"
        assert (await alice.send(room, "psst"))["type"] == "ack"
        await bob.wait_deliveries(room, 1)
        for who, other in ((alice, "bob"), (bob, "alice")):
            listed = _listed(await who.rooms())[room]
            assert listed["dm"] is True and listed["with"] == other
        assert room not in _listed(await eve.rooms())
        assert (await eve.join(room))["code"] == "not_found"
        invite = {"type": "invite", "room": room, "user": "eve"}
        assert (await alice.request(invite))["code"] == "forbidden"
        assert (await alice.request({"type": "dm", "user": "alice"}))["code"] == "bad_request"


async def test_typing_reaches_the_other_members_only(two_gateways: LocalCluster) -> None:
    cluster = two_gateways
    async with (
        await ChatClient.connect(cluster.gateway_url(0), "alice") as alice,
        await ChatClient.connect(cluster.gateway_url(1), "bob") as bob,
    ):
        await alice.create("r")
        await alice.join("r")
        await bob.join("r")
        # (typing is not stored: bob's gateway must follow the room already)
        hello = await alice.send("r", "hello")
        assert (await bob.next_of("message", room="r"))["seq"] == hello["seq"]
        await alice.send_frame({"type": "typing", "room": "r"})
        seen = await bob.next_of("typing", room="r")
        assert seen["user"] == "alice"
        # a second one at once is dropped by the rate limit; nothing echoes
        await alice.send_frame({"type": "typing", "room": "r"})
        await alice.ping()
        await bob.ping()
        assert not [f for f in alice.frames if f.get("type") == "typing"]
        assert len([f for f in bob.frames if f.get("type") == "typing"]) == 1


async def test_read_markers_rise_and_reach_the_users_other_connections(
    two_gateways: LocalCluster,
) -> None:
    cluster = two_gateways
    async with (
        await ChatClient.connect(cluster.gateway_url(0), "alice") as alice,
        await ChatClient.connect(cluster.gateway_url(0), "bob") as bob,
        await ChatClient.connect(cluster.gateway_url(1), "bob") as bob_phone,
    ):
        await alice.create("r")
        await alice.join("r")
        joined = await bob.join("r")
        assert joined["unread"] == 0
        last = 0
        for i in range(5):
            last = (await alice.send("r", f"m{i}"))["seq"]
        assert _listed(await bob.rooms())["r"]["unread"] == 5
        answer = await bob.request({"type": "read", "room": "r", "seq": last - 2})
        assert answer["type"] == "read" and answer["seq"] == last - 2
        note = await bob_phone.next_of("read", room="r")
        assert note["seq"] == last - 2
        assert _listed(await bob_phone.rooms())["r"]["unread"] == 2
        # lower is ignored: the marker only rises
        lower = await bob.request({"type": "read", "room": "r", "seq": 1})
        assert lower["seq"] == last - 2
        assert (await bob.join("r"))["unread"] == 2
        assert not [f for f in bob.frames if f.get("type") == "read" and "id" not in f]


async def test_a_mention_reaches_the_member_even_where_not_joined(
    two_gateways: LocalCluster,
) -> None:
    cluster = two_gateways
    async with (
        await ChatClient.connect(cluster.gateway_url(0), "alice") as alice,
        await ChatClient.connect(cluster.gateway_url(1), "bob") as bob,
    ):
        await alice.create("r")
        await bob.join("r")
        async with await ChatClient.connect(cluster.gateway_url(1), "bob") as bob_idle:
            sent = await alice.send("r", "hey @bob, and @nobody or mail x@bob.example")
            for conn in (bob, bob_idle):
                note = await conn.next_of("mention")
                assert note == {**note, "room": "r", "seq": sent["seq"], "from": "alice"}
            await alice.send("r", "talking to myself @alice")

            async def quiet() -> bool:
                await bob_idle.ping()
                return True

            await wait_for(quiet, 5)
            assert len([f for f in bob_idle.frames if f.get("type") == "mention"]) == 1
            assert not [f for f in alice.frames if f.get("type") == "mention"]


async def test_privacy_invitations_and_read_markers_survive_the_administrators_death(
    cluster: LocalCluster,
) -> None:
    url = cluster.gateway_url()
    async with (
        await ChatClient.connect(url, "alice") as alice,
        await ChatClient.connect(url, "eve") as eve,
    ):
        assert (await alice.request({"type": "create", "room": "vault", "private": True}))[
            "type"
        ] == "created"
        await alice.join("vault")
        invite = await alice.request({"type": "invite", "room": "vault", "user": "bob"})
        assert invite["type"] == "invited"
        last = 0
        for i in range(4):
            last = (await alice.send("vault", f"m{i}"))["seq"]
        assert (await alice.request({"type": "read", "room": "vault", "seq": last - 1}))[
            "seq"
        ] == last - 1
        admin = _listed(await alice.rooms())["vault"]["administrator"]
        cluster.kill_node(admin)

        async def served() -> bool:
            listed = _listed(await alice.rooms()).get("vault")
            return listed is not None and listed["administrator"] not in ("", admin)

        await wait_for(served, 30, interval=0.2, message="a new administrator")
        assert _listed(await alice.rooms())["vault"]["unread"] == 1
        assert (await eve.join("vault"))["code"] == "not_found"
        assert "vault" not in _listed(await eve.rooms())
        async with await ChatClient.connect(url, "bob") as bob:
            joined = await bob.join("vault")
            assert joined["type"] == "joined" and "bob" in joined["members"]
