"""The gateway with the real `wscat` client, used the way the README shows."""

from __future__ import annotations

from support.cluster import LocalCluster
from support.wscat import WscatSession, require_wscat, wscat_execute


async def test_wscat_execute_ping(cluster: LocalCluster) -> None:
    """`wscat -c URL -x '{"type":"ping"}'` prints a pong."""
    require_wscat()
    frames = await wscat_execute(f"{cluster.gateway_url()}?user=alice", [{"type": "ping"}])
    assert {"type": "pong"} in [{"type": f.get("type")} for f in frames]


async def test_wscat_execute_round_trip(cluster: LocalCluster) -> None:
    """Create, join and send in one `wscat -x ...` run: created, joined, ack and the message."""
    require_wscat()
    frames = await wscat_execute(
        f"{cluster.gateway_url()}?user=alice",
        [
            {"type": "create", "room": "general", "id": "c1"},
            {"type": "join", "room": "general", "id": "j1"},
            {"type": "send", "room": "general", "text": "hello from wscat", "id": "m1"},
        ],
    )
    types = [f.get("type") for f in frames]
    assert "created" in types and "joined" in types, frames
    ack = next(f for f in frames if f.get("type") == "ack")
    assert ack["id"] == "m1" and ack["room"] == "general"
    message = next(f for f in frames if f.get("type") == "message")
    assert message["text"] == "hello from wscat" and message["from"] == "alice"
    assert message["seq"] == ack["seq"]


async def test_wscat_interactive_session(cluster: LocalCluster) -> None:
    """An interactive wscat session on a terminal, as in the README, sees the message."""
    require_wscat()
    session = WscatSession(f"{cluster.gateway_url()}?user=alice")
    try:
        await session.wait_connected()
        session.type_line('{"type":"create","room":"general"}')
        await session.wait_frame(type="created", room="general", owner="alice")
        session.type_line('{"type":"join","room":"general"}')
        await session.wait_frame(type="joined", room="general")
        session.type_line('{"type":"send","room":"general","text":"hello","id":"m1"}')
        ack = await session.wait_frame(type="ack", id="m1")
        message = await session.wait_frame(type="message", text="hello")
        assert message["seq"] == ack["seq"] and message["from"] == "alice"
        session.type_line('{"type":"ping"}')
        await session.wait_frame(type="pong")
    finally:
        session.close()


async def test_wscat_bad_frame_keeps_the_connection(cluster: LocalCluster) -> None:
    """A malformed line typed into wscat gets an error frame and the session lives on."""
    require_wscat()
    session = WscatSession(f"{cluster.gateway_url()}?user=bob")
    try:
        await session.wait_connected()
        session.type_line("this is not json")
        error = await session.wait_frame(type="error")
        assert error["code"] == "bad_request"
        session.type_line('{"type":"ping"}')
        await session.wait_frame(type="pong")
    finally:
        session.close()
