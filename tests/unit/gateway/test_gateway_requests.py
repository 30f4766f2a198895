"""Every request type through a gateway over the fake node (DESIGN §5)."""

from __future__ import annotations

from typing import Any

from gateway_fake_node import FakeRoomService
from parley.gateway.app import Gateway
from parley.gateway.handlers import Handlers
from support.client import ChatClient
from support.wait import wait_for


async def test_create_join_send_ack_and_delivery(gateway: Gateway) -> None:
    """create -> created, join -> joined then entries, send -> ack and the message."""
    async with await ChatClient.connect(gateway.url, "alice") as alice:
        created = await alice.create("general")
        assert (created["type"], created["owner"]) == ("created", "alice")
        joined = await alice.join("general")
        assert joined["type"] == "joined"
        assert joined["last_seq"] == 0
        assert joined["members"] == ["alice"]
        ack = await alice.send("general", "hello", "m1")
        assert ack == {"type": "ack", "id": "m1", "room": "general", "seq": 1}
        message = await alice.next_of("message", room="general")
        assert message["seq"] == 1
        assert message["from"] == "alice"
        assert message["text"] == "hello"
        assert message["ts"].endswith("Z")


async def test_created_reply_shape(gateway: Gateway) -> None:
    """created names the room and its owner, echoing the id."""
    async with await ChatClient.connect(gateway.url, "alice") as alice:
        reply = await alice.request({"type": "create", "room": "r", "id": "c"})
        assert reply == {"type": "created", "id": "c", "room": "r", "owner": "alice"}


async def test_same_id_gets_same_seq(gateway: Gateway) -> None:
    """Sending the same id again is stored once and acked with the same seq."""
    async with await ChatClient.connect(gateway.url, "alice") as alice:
        await alice.create("r")
        first = await alice.send("r", "once", "dup")
        again = await alice.send("r", "once", "dup")
        assert first["seq"] == again["seq"]
        other = await alice.send("r", "twice", "dup2")
        assert other["seq"] == first["seq"] + 1


async def test_send_without_id_is_acked(gateway: Gateway) -> None:
    """A send without an id is acked without one."""
    async with await ChatClient.connect(gateway.url, "alice") as alice:
        await alice.create("r")
        await alice.send_frame({"type": "send", "room": "r", "text": "x"})
        ack = await alice.next_of("ack")
        assert ack == {"type": "ack", "room": "r", "seq": 1}


async def test_error_codes(gateway: Gateway) -> None:
    """room_exists, not_found, not_member and forbidden come back as error frames."""
    async with (
        await ChatClient.connect(gateway.url, "alice") as alice,
        await ChatClient.connect(gateway.url, "bob") as bob,
    ):
        await alice.create("r")
        assert (await bob.create("r"))["code"] == "room_exists"
        assert (await bob.join("nope"))["code"] == "not_found"
        error = await bob.send("r", "hi", "b1")
        assert error["type"] == "error"
        assert error["id"] == "b1"
        assert error["code"] == "not_member"
        assert (await bob.history("r"))["code"] == "not_member"
        assert (await bob.leave("r"))["code"] == "not_member"
        assert (await bob.join("r"))["type"] == "joined"
        assert (await bob.delete("r"))["code"] == "forbidden"
        assert (await bob.members("nope"))["code"] == "not_found"


async def test_history_members_rooms(gateway: Gateway) -> None:
    """history lists entries oldest first; members and rooms describe the room."""
    async with (
        await ChatClient.connect(gateway.url, "alice") as alice,
        await ChatClient.connect(gateway.url, "bob") as bob,
    ):
        await alice.create("b-room")
        await alice.create("a-room")
        await bob.join("b-room")
        for i in range(5):
            await alice.send("b-room", f"m{i}")
        history = await alice.history("b-room")
        assert [m["seq"] for m in history["messages"]] == [1, 2, 3, 4, 5, 6]
        assert history["messages"][0] == history["messages"][0] | {
            "type": "presence", "user": "bob", "event": "join"}  # fmt: skip
        page = await alice.history("b-room", before=5, limit=2)
        assert [m["seq"] for m in page["messages"]] == [3, 4]
        assert (await alice.history("b-room", before=0))["messages"] == []
        members = await alice.members("b-room")
        assert members["members"] == [
            {"user": "alice", "online": False}, {"user": "bob", "online": True}]  # fmt: skip
        rooms = await bob.rooms()
        assert [r["room"] for r in rooms["rooms"]] == ["a-room", "b-room"]
        assert rooms["rooms"][1] == {
            "room": "b-room", "owner": "alice", "members": 2, "last_seq": 6,
            "administrator": "node-0",
        }  # fmt: skip


async def test_leave_detaches_and_appends(gateway: Gateway) -> None:
    """leave -> left; the leaver sees its own leave entry and nothing after it."""
    async with (
        await ChatClient.connect(gateway.url, "alice") as alice,
        await ChatClient.connect(gateway.url, "bob") as bob,
    ):
        await alice.create("r")
        await alice.join("r")
        await bob.join("r")
        left = await bob.request({"type": "leave", "room": "r", "id": "l"})
        assert left == {"type": "left", "id": "l", "room": "r"}
        leave = await alice.next_of("presence", room="r", where=lambda f: f.get("event") == "leave")
        assert (leave["user"], leave["seq"]) == ("bob", 2)
        await bob.wait_deliveries("r", 2)
        await alice.send("r", "after")
        await alice.next_of("message", room="r")
        assert (await bob.ping())["type"] == "pong"
        assert [f["seq"] for f in bob.deliveries["r"]] == [1, 2]
        await wait_for(lambda: len(gateway._fanout.feed("r").sockets) == 1, 5, message="detached")


async def test_delete_reaches_every_member(gateway: Gateway, node: Any) -> None:
    """delete -> deleted to the owner (with its id) and to every joined member."""
    service: FakeRoomService = node[0]
    async with (
        await ChatClient.connect(gateway.url, "alice") as alice,
        await ChatClient.connect(gateway.url, "bob") as bob,
    ):
        await alice.create("r")
        await alice.join("r")
        await bob.join("r")
        reply = await alice.delete("r")
        assert reply["type"] == "deleted"
        assert reply["room"] == "r"
        assert (await bob.next_of("deleted", room="r")) == {"type": "deleted", "room": "r"}
        assert "r" not in service.rooms
        await wait_for(lambda: gateway._fanout.feed("r") is None, 5, message="feed dropped")
        assert (await bob.send("r", "x"))["code"] == "not_found"


def _event(user: str, event: str) -> Any:
    return lambda f: f.get("event") == event and f.get("user") == user and "seq" not in f


async def test_presence_online_offline(gateway: Gateway, node: Any) -> None:
    """A user's first joined socket reports online, their last one closing reports offline."""
    service: FakeRoomService = node[0]
    async with await ChatClient.connect(gateway.url, "alice") as alice:
        await alice.create("r")
        await alice.join("r")
        bob = await ChatClient.connect(gateway.url, "bob")
        await bob.join("r")
        online = await alice.next_of("presence", room="r", where=_event("bob", "online"))
        assert "seq" not in online
        members = await alice.members("r")
        assert {"user": "bob", "online": True} in members["members"]
        await bob.close()
        await alice.next_of("presence", room="r", where=_event("bob", "offline"))
        changes = [(c.user, c.online) for u in service.presence_updates for c in u.changes]
        assert changes.count(("bob", True)) == 1
        assert changes.count(("bob", False)) == 1
        # Closing is not leaving: bob is still a member.
        assert "bob" in service.rooms["r"].members


async def test_ping(gateway: Gateway) -> None:
    """ping -> pong with the id."""
    async with await ChatClient.connect(gateway.url, "alice") as alice:
        assert await alice.request({"type": "ping", "id": "p"}) == {"type": "pong", "id": "p"}


async def test_a_send_that_fails_after_its_batch_is_answered_and_the_reader_goes_on(
    gateway: Gateway, monkeypatch: Any
) -> None:
    """The send fast path answers from a callback, outside the session's
    error boundary: a failure there is answered `internal` all the same,
    and the requests after it (which wait for the sends before them) are
    served."""
    async with await ChatClient.connect(gateway.url, "alice") as alice:
        await alice.create("general")
        await alice.join("general")
        assert (await alice.send("general", "first", "m1"))["seq"] == 1  # administrator known

        def broken(*_: Any) -> None:
            raise RuntimeError("planted")

        monkeypatch.setattr(Handlers, "_acked", broken)
        assert (await alice.send("general", "second", "m2"))["code"] == "internal"
        monkeypatch.undo()
        history = await alice.history("general")
        assert [m["text"] for m in history["messages"] if m["type"] == "message"] == [
            "first",
            "second",
        ]
