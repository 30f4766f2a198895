"""Edits, unsends and reactions over real WebSockets: acknowledged like sends,
delivered to every member (on both gateways), folded into `history`, and
kept through the SIGKILL of the room's administrator."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from support.client import ChatClient, Frame
from support.cluster import LocalCluster
from support.wait import wait_for


async def _annotate(client: ChatClient, kind: str, room: str, seq: int, **fields: Any) -> Frame:
    return await client.request({"type": kind, "room": room, "seq": seq, **fields})


def _by_seq(history: Frame) -> dict[int, Frame]:
    return {m["seq"]: m for m in history["messages"]}


async def test_edit_unsend_and_react_reach_every_member_and_history(
    make_cluster: Callable[..., Awaitable[LocalCluster]],
) -> None:
    cluster = await make_cluster(nodes=3, gateways=2)
    async with (
        await ChatClient.connect(cluster.gateway_url(0), "alice") as alice,
        await ChatClient.connect(cluster.gateway_url(1), "bob") as bob,
    ):
        await alice.create("r")
        await alice.join("r")
        await bob.join("r")
        hello = (await alice.send("r", "hello"))["seq"]
        oops = (await bob.send("r", "oops"))["seq"]

        edit = await _annotate(alice, "edit", "r", hello, text="hello, world", id="e1")
        assert edit["type"] == "ack" and edit["seq"] == oops + 1
        for client in (alice, bob):
            seen = await client.next_of("edit", room="r")
            assert seen["target"] == hello and seen["from"] == "alice"
            assert seen["text"] == "hello, world" and seen["seq"] == edit["seq"]
        # a retry with the same id stores nothing new
        again = await _annotate(alice, "edit", "r", hello, text="hello, world", id="e1")
        assert again["seq"] == edit["seq"]

        assert (await _annotate(bob, "edit", "r", hello, text="mine"))["code"] == "forbidden"
        assert (await _annotate(bob, "react", "r", 999, emoji="👍"))["code"] == "not_found"
        assert (await _annotate(bob, "react", "r", hello, emoji="ok"))["code"] == "bad_request"

        for who, kind in ((bob, "react"), (alice, "react"), (bob, "unreact")):
            assert (await _annotate(who, kind, "r", hello, emoji="👍🏽"))["type"] == "ack"
        reactions = [await bob.next_of("reaction", room="r") for _ in range(3)]
        assert [(r["from"], r["on"]) for r in reactions] == [
            ("bob", True),
            ("alice", True),
            ("bob", False),
        ]
        assert {r["emoji"] for r in reactions} == {"👍🏽"}

        # the owner may unsend someone else's message; then it is gone for edits
        unsent = await _annotate(alice, "unsend", "r", oops)
        assert unsent["type"] == "ack"
        seen = await bob.next_of("unsent", room="r")
        assert seen["target"] == oops and seen["by"] == "alice"
        assert (await _annotate(bob, "edit", "r", oops, text="x"))["code"] == "not_found"
        assert (await _annotate(bob, "unsend", "r", hello))["code"] == "forbidden"

        history = _by_seq(await bob.history("r"))
        assert history[hello]["text"] == "hello, world"
        assert history[hello]["edited"] is True
        assert history[hello]["reactions"] == {"👍🏽": ["alice"]}
        assert history[oops]["unsent"] is True and "text" not in history[oops]
        # seq still rises by one for everyone, the new entries included
        seqs = [f["seq"] for f in bob.deliveries["r"]]
        assert seqs == list(range(seqs[0], seqs[-1] + 1))


async def test_annotations_survive_the_administrators_death(cluster: LocalCluster) -> None:
    url = cluster.gateway_url()
    async with await ChatClient.connect(url, "alice") as alice:
        await alice.create("r")
        await alice.join("r")
        first = (await alice.send("r", "first"))["seq"]
        assert (await _annotate(alice, "edit", "r", first, text="first!"))["type"] == "ack"
        assert (await _annotate(alice, "react", "r", first, emoji="🎉"))["type"] == "ack"
        admin = (await alice.rooms())["rooms"][0]["administrator"]
        cluster.kill_node(admin)

        async def edited_again() -> bool:
            answer = await _annotate(alice, "edit", "r", first, text="first!!", id="after")
            return answer.get("type") == "ack"

        await wait_for(edited_again, 30, interval=0.2, message="an edit after the failover")
        folded = _by_seq(await alice.history("r"))[first]
        assert folded["text"] == "first!!" and folded["edited"] is True
        assert folded["reactions"] == {"🎉": ["alice"]}
