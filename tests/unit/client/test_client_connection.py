"""Connection: request/reply, ordered delivery, dedupe, gaps and resume, against a real socket."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
from client_gateway_double import GatewayDouble
from parley.client.connection import Connection, EventStream, build_url
from parley.client.errors import ConnectionLost, GatewayUnreachable, ServerError, Unauthorized
from parley.client.events import Deleted, Entry, Event, Status
from support.wait import wait_for


async def drain(stream: EventStream, until: int, room: str = "general") -> list[Entry]:
    """Collect entries of `room` until one with seq `until` arrives (5 s deadline)."""
    got: list[Entry] = []

    async def collect() -> None:
        async for event in stream:
            if isinstance(event, Entry) and event.room == room:
                got.append(event)
                if event.seq >= until:
                    return

    await asyncio.wait_for(collect(), 5)
    return got


def seqs(entries: list[Entry]) -> list[int]:
    """The seqs of some entries."""
    return [e.seq for e in entries]


async def next_of(stream: EventStream, kind: type[Event], within: float = 5) -> Event:
    """The next event of a given class from a stream."""

    async def find() -> Event:
        async for event in stream:
            if isinstance(event, kind):
                return event
        raise AssertionError("stream ended")

    return await asyncio.wait_for(find(), within)


@pytest.fixture
async def alice(gateway: GatewayDouble) -> AsyncIterator[Connection]:
    """A connected client for user alice, closed after the test."""
    conn = Connection(gateway.url, "alice", backoff_initial=0.05, backoff_max=0.2)
    await conn.connect()
    yield conn
    await conn.close()


def test_build_url_adds_user_or_token() -> None:
    """?user= is used without a token, ?token= replaces it when given."""
    assert build_url("ws://h:1/ws", "bob") == "ws://h:1/ws?user=bob"
    assert build_url("ws://h:1/ws?user=x", "bob", "T") == "ws://h:1/ws?token=T"


async def test_requests_get_their_replies(alice: Connection) -> None:
    """create, rooms, join, send and history each return their reply."""
    created = await alice.create("general")
    assert created["owner"] == "alice"
    joined = await alice.join("general")
    assert joined["members"] == ["alice"]
    seq = await alice.send("general", "hello")
    assert seq == 2  # seq 1 is alice's join
    rooms = await alice.rooms()
    assert rooms[0]["room"] == "general" and rooms[0]["last_seq"] == 2
    history = await alice.history("general")
    assert [e.text for e in history if e.kind == "message"] == ["hello"]
    await alice.ping()


async def test_entries_arrive_in_order(gateway: GatewayDouble, alice: Connection) -> None:
    """Pushed entries of a joined room arrive as Entry events in seq order."""
    stream = alice.events("general")
    await alice.create("general")
    await alice.join("general")
    for i in range(5):
        await alice.send("general", f"m{i}")
    got = await drain(stream, 6)
    assert seqs(got) == [1, 2, 3, 4, 5, 6]
    assert got[0].kind == "presence" and got[0].event == "join"
    assert got[-1].text == "m4" and got[-1].user == "alice" and got[-1].time is not None


async def test_unreachable_gateway_raises_gateway_unreachable() -> None:
    """Nothing listening: connect() raises GatewayUnreachable with the URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    conn = Connection(f"ws://127.0.0.1:{port}/ws", "alice")
    with pytest.raises(GatewayUnreachable, match="cannot reach"):
        await conn.connect()


async def test_refused_token_raises_unauthorized(gateway: GatewayDouble) -> None:
    """HTTP 401 at the handshake becomes Unauthorized."""
    conn = Connection(gateway.url, "alice", token="bad")
    with pytest.raises(Unauthorized, match="401"):
        await conn.connect()


async def test_error_frames_become_server_errors(gateway: GatewayDouble, alice: Connection) -> None:
    """An error reply raises ServerError with its code and a human sentence."""
    await alice.create("general")
    with pytest.raises(ServerError) as info:
        await alice.send("general", "hi")
    assert info.value.code == "not_member"
    assert "not a member" in str(info.value)
    with pytest.raises(ServerError) as info:
        await alice.join("nowhere")
    assert info.value.code == "not_found"
    with pytest.raises(ServerError) as info:
        await alice.create("general")
    assert info.value.code == "room_exists"


async def test_duplicates_are_dropped(gateway: GatewayDouble, alice: Connection) -> None:
    """Entries pushed twice are shown once."""
    stream = alice.events("general")
    await alice.create("general")
    await alice.join("general")
    gateway.duplicate_live = True
    for i in range(3):
        await alice.send("general", f"m{i}")
    got = await drain(stream, 4)
    assert seqs(got) == [1, 2, 3, 4]
    await wait_for(lambda: alice.duplicates_dropped >= 3, 5)


async def test_gap_is_filled_from_history(gateway: GatewayDouble, alice: Connection) -> None:
    """A missing live entry is fetched with history before later entries are shown."""
    stream = alice.events("general")
    await alice.create("general")
    await alice.join("general")
    gateway.drop_live = {("general", 3), ("general", 4)}
    for i in range(4):
        await alice.send("general", f"m{i}")
    got = await drain(stream, 5)
    assert seqs(got) == [1, 2, 3, 4, 5]
    assert [e.text for e in got[1:]] == ["m0", "m1", "m2", "m3"]
    assert alice.gaps_filled == 2


async def test_unfillable_gap_is_reported_not_hidden(
    gateway: GatewayDouble, alice: Connection
) -> None:
    """When history cannot fill a gap, a gap Status says so and delivery goes on."""
    stream = alice.events("general")
    await alice.create("general")
    await alice.join("general")
    gateway.drop_live = {("general", 2)}
    gateway.history_works = False
    await alice.send("general", "lost")
    await alice.send("general", "after")
    events: list[Event] = []

    async def collect() -> None:
        async for event in stream:
            events.append(event)
            if isinstance(event, Entry) and event.seq == 3:
                return

    await asyncio.wait_for(collect(), 5)
    gaps = [e for e in events if isinstance(e, Status) and e.state == "gap"]
    assert gaps and "#2-#2" in gaps[0].message
    assert seqs([e for e in events if isinstance(e, Entry)]) == [1, 3]


async def test_reconnect_resumes_without_gap_or_duplicate(gateway: GatewayDouble) -> None:
    """After the socket is cut, the client re-joins since its last seq and misses nothing."""
    alice = Connection(gateway.url, "alice", backoff_initial=0.05, backoff_max=0.2)
    bob = Connection(gateway.url, "bob", reconnect=False)
    await alice.connect()
    await bob.connect()
    try:
        stream = alice.events("general")
        await alice.create("general")
        await alice.join("general")
        await bob.join("general")
        await alice.send("general", "before")
        first = await drain(stream, 3)
        # Stop alice's socket and let bob talk while she is away.
        gateway.drop_live = {("general", n) for n in range(1, 100)}
        for ws, user in list(gateway.users.items()):
            if user == "alice":
                ws.transport.abort()
        await next_of(stream, Status)
        gateway.drop_live = set()
        rest_task = asyncio.create_task(drain(stream, 7))
        for i in range(4):
            await bob.send("general", f"while-away-{i}")
        rest = await rest_task
        assert seqs(first + rest) == list(range(1, 8))
        assert alice.reconnects == 1
        resume = [f for f in gateway.frames_in if f.get("type") == "join" and "since" in f]
        assert resume and resume[-1]["since"] == 3
    finally:
        await alice.close()
        await bob.close()


async def test_gateway_restart_is_survived(gateway: GatewayDouble, alice: Connection) -> None:
    """The gateway stops and starts on the same port; entries continue from last+1."""
    stream = alice.events("general")
    await alice.create("general")
    await alice.join("general")
    await alice.send("general", "one")
    await drain(stream, 2)
    await gateway.stop()
    await next_of(stream, Status)
    await gateway.start()
    assert await alice.wait_connected(5)
    seq = await alice.send("general", "two", retry_for=5)
    got = await drain(stream, seq)
    assert seqs(got) == [3]


async def test_send_retry_after_reconnect_is_stored_once(gateway: GatewayDouble) -> None:
    """A send retried with the same id across a cut returns the first seq."""
    alice = Connection(gateway.url, "alice", backoff_initial=0.05, backoff_max=0.2)
    await alice.connect()
    try:
        await alice.create("general")
        await alice.join("general")
        first = await alice.send("general", "once", msg_id="fixed-1")
        await gateway.cut_connections()
        again = await alice.send("general", "once", msg_id="fixed-1", retry_for=5)
        assert again == first
        assert sum(1 for e in gateway.rooms["general"].log if e.get("text") == "once") == 1
    finally:
        await alice.close()


async def test_deleted_room_is_reported_and_forgotten(gateway: GatewayDouble) -> None:
    """When the owner deletes a room, other members get Deleted and stop resuming it."""
    alice = Connection(gateway.url, "alice")
    bob = Connection(gateway.url, "bob")
    await alice.connect()
    await bob.connect()
    try:
        stream = bob.events("general")
        await alice.create("general")
        await alice.join("general")
        await bob.join("general")
        await alice.delete("general")
        event = await next_of(stream, Deleted)
        assert event == Deleted("general")
        assert "general" not in bob.joined_rooms
        with pytest.raises(ServerError) as info:
            await bob.delete("nowhere")
        assert info.value.code == "not_found"
    finally:
        await alice.close()
        await bob.close()


async def test_join_since_skips_older_entries(gateway: GatewayDouble, alice: Connection) -> None:
    """join(since=N) delivers only entries after N."""
    await alice.create("general")
    await alice.join("general")
    for i in range(4):
        await alice.send("general", f"m{i}")
    other = Connection(gateway.url, "alice")
    await other.connect()
    try:
        stream = other.events("general")
        await other.join("general", since=3)
        got = await drain(stream, 5)
        assert seqs(got) == [4, 5]
    finally:
        await other.close()


async def test_close_ends_event_streams(alice: Connection) -> None:
    """After close(), iterating a stream stops."""
    stream = alice.events()
    await alice.close()
    assert [e async for e in stream] == []


async def test_without_reconnect_requests_fail_fast_after_a_drop(gateway: GatewayDouble) -> None:
    """reconnect=False: a drop emits a closed Status and later requests fail at once."""
    conn = Connection(gateway.url, "alice", reconnect=False, request_timeout=30)
    await conn.connect()
    try:
        stream = conn.events()
        await gateway.cut_connections()
        status = await next_of(stream, Status)
        assert isinstance(status, Status) and status.state == "closed"
        with pytest.raises(ConnectionLost):
            await asyncio.wait_for(conn.rooms(), 2)
    finally:
        await conn.close()


async def test_refused_reconnect_ends_with_unauthorized_status(gateway: GatewayDouble) -> None:
    """A token refused on reconnect (e.g. expired) ends the session with reason unauthorized."""
    conn = Connection(gateway.url, "alice", token="good", backoff_initial=0.05)
    await conn.connect()
    try:
        stream = conn.events()
        gateway.refuse_token = "good"
        await gateway.cut_connections()
        while True:
            status = await next_of(stream, Status)
            assert isinstance(status, Status)
            if status.state == "closed":
                break
        assert status.reason == "unauthorized" and "401" in status.message
        assert not await conn.wait_connected(1)
    finally:
        await conn.close()


async def test_entries_of_a_forgotten_room_are_dropped(
    gateway: GatewayDouble, alice: Connection
) -> None:
    """After forget(room), its pushes are ignored; joining again starts afresh."""
    stream = alice.events("general")
    await alice.create("general")
    await alice.join("general")
    await drain(stream, 1)
    alice.forget("general")
    await alice.send("general", "unseen")
    await alice.ping()  # the push precedes the pong on the socket
    assert alice.last_seq("general") is None
    await alice.join("general")
    got = await drain(stream, 2)
    assert seqs(got) == [1, 2]


async def test_resume_retries_while_the_room_is_unavailable(
    gateway: GatewayDouble, alice: Connection
) -> None:
    """A re-join answered `unavailable` is retried until it succeeds; nothing is lost."""
    stream = alice.events("general")
    await alice.create("general")
    await alice.join("general")
    await drain(stream, 1)
    gateway.fail_joins = 2
    await gateway.cut_connections()
    await wait_for(lambda: alice.reconnects == 1 and gateway.fail_joins == 0, 5)
    await wait_for(lambda: gateway.subscribed("general", "alice"), 5)
    seq = await alice.send("general", "after", retry_for=5)
    got = await drain(stream, seq)
    assert seqs(got) == [2]
    assert "general" in alice.joined_rooms
