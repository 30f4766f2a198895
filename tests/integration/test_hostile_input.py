"""Hostile input (DESIGN §5, §8 invariant 5): nothing a client sends crashes a process or a room.

One client on the gateway sends every kind of bad frame while others chat in
a room on the same gateway; the bad frames get `error` replies, abuse closes
only the abuser's own connections, and the chatters notice nothing.
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import quote

import pytest
from parley.supervisor import grpc_serving, http_ready
from support.client import ChatClient, Frame
from support.cluster import LocalCluster
from support.wait import wait_for
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

CHATTERS = ("alice", "bob", "carol")
MAX_CHAT_ROUNDS = 2000
"""Upper bound on each chatter's sends, whatever happens to the hostile side."""
CHAT_PACE = 0.05
"""Seconds between a chatter's sends: about 20 frames/s, well inside the rate limit."""
HOSTILE_PACE = 0.025
"""Seconds between the hostile client's bad frames: 40/s, inside the default 50/s."""

BAD_NAMES = [
    "General",  # uppercase
    "général",  # non-ASCII letter
    "\uff52",  # fullwidth r
    "😀",
    "../etc",
    "a/b",
    "..",
    "-lead",
    "_lead",
    " r",
    "r\u0000",
    "r\n",
    "x" * 65,
    "",
]

RAW_BAD_FRAMES = [
    "{not json",
    "",
    " ",
    "{",
    '{"type":"ping"',
    "null",
    "42",
    "true",
    '"ping"',
    '["ping"]',
    "[]",
    '{"type":"join","room":"r","since":' + "9" * 5000 + "}",  # more digits than Python converts
    '{"type":"ping","junk":' + "[" * 20000 + "]" * 20000 + "}",
    '{"a":' * 8000 + "1" + "}" * 8000,
    "\ufeff{}",
    '{"type":"ping","id":5}',  # an id that cannot be echoed
    '{"type":"ping","id":["x"]}',
    '{"type":"ping","id":"' + "i" * 200 + '"}',
    '{"type":"ping","id":"\\ud800"}',
]
"""Frames that get a `bad_request` error without an id."""


def _bad_requests() -> list[tuple[Frame | str, str]]:
    """(frame, expected error code) for bad frames whose error echoes the id `bad`.

    A dict is JSON-encoded; a str is sent as is.
    """
    cases: list[tuple[Frame | str, str]] = [
        ({"type": "nope"}, "bad_request"),
        ({"type": "PING"}, "bad_request"),
        ({"type": ""}, "bad_request"),
        ({"type": "x" * 5000}, "bad_request"),
        ({}, "bad_request"),
        ({"type": 5}, "bad_request"),
        ({"type": None}, "bad_request"),
        ({"type": ["send"]}, "bad_request"),
        ({"type": {"k": "v"}}, "bad_request"),
        ({"type": "join"}, "bad_request"),
        ({"type": "create"}, "bad_request"),
        ({"type": "history"}, "bad_request"),
        ({"type": "send", "room": "r"}, "bad_request"),
        ({"type": "send", "text": "hi"}, "bad_request"),
        ({"type": "send", "room": 5, "text": "hi"}, "bad_request"),
        ({"type": "send", "room": None, "text": "hi"}, "bad_request"),
        ({"type": "send", "room": ["r"], "text": "hi"}, "bad_request"),
        ({"type": "send", "room": "r", "text": 5}, "bad_request"),
        ({"type": "send", "room": "r", "text": ["hi"]}, "bad_request"),
        ({"type": "send", "room": "r", "text": {"t": "hi"}}, "bad_request"),
        ({"type": "send", "room": "r", "text": True}, "bad_request"),
        ({"type": "send", "room": "r", "text": ""}, "bad_request"),
        ({"type": "send", "room": "r", "text": "x" * 4001}, "too_large"),
        ({"type": "send", "room": "r", "text": "é" * 4001}, "too_large"),
        ('{"type":"send","room":"r","text":"\\ud800","id":"bad"}', "bad_request"),
        ({"type": "join", "room": "r", "since": "3"}, "bad_request"),
        ({"type": "join", "room": "r", "since": -1}, "bad_request"),
        ({"type": "join", "room": "r", "since": True}, "bad_request"),
        ({"type": "join", "room": "r", "since": 1.5}, "bad_request"),
        ({"type": "join", "room": "r", "since": 2**64}, "bad_request"),
        ({"type": "join", "room": "r", "since": 10**300}, "bad_request"),
        ('{"type":"join","room":"r","since":1e400,"id":"bad"}', "bad_request"),
        ('{"type":"join","room":"r","since":NaN,"id":"bad"}', "bad_request"),
        ('{"type":"join","room":"r","since":-Infinity,"id":"bad"}', "bad_request"),
        ({"type": "history", "room": "r", "limit": 0}, "bad_request"),
        ({"type": "history", "room": "r", "limit": -5}, "bad_request"),
        ({"type": "history", "room": "r", "limit": 10**6}, "bad_request"),
        ({"type": "history", "room": "r", "limit": "10"}, "bad_request"),
        ({"type": "history", "room": "r", "before": -1}, "bad_request"),
        ({"type": "history", "room": "r", "before": 2**70}, "bad_request"),
    ]
    for name in BAD_NAMES:
        for kind in ("create", "join", "send", "history", "members", "leave", "delete"):
            frame: Frame = {"type": kind, "room": name}
            if kind == "send":
                frame["text"] = "hi"
            cases.append((frame, "bad_request"))
    return cases


async def _handshake_status(url: str) -> int:
    """The HTTP status a refused WebSocket handshake to `url` got."""
    with pytest.raises(InvalidStatus) as info:
        async with connect(url, open_timeout=10):
            pass
    return info.value.response.status_code


async def _chat(client: ChatClient, stop: asyncio.Event) -> list[Frame]:
    """Send paced messages to room r until `stop` is set; return the replies."""
    replies: list[Frame] = []
    for i in range(MAX_CHAT_ROUNDS):
        replies.append(await client.send("r", f"{client.user} {i}", f"c{i}"))
        if stop.is_set():
            break
        await asyncio.sleep(CHAT_PACE)  # pacing under the rate limit, not synchronization
    return replies


async def _abuse_with_a_huge_frame(url: str) -> int | None:
    """Send one 100 KiB frame on a fresh connection; return its close code."""
    async with await ChatClient.connect(url, "mallory") as client:
        assert (await client.ping())["type"] == "pong"
        await client.send_frame(json.dumps({"type": "ping", "pad": "x" * (100 * 1024)}))
        await asyncio.wait_for(client.closed.wait(), 20)
        return client.close_code


async def _abuse_with_a_flood(url: str) -> int | None:
    """Fire pings without waiting for replies on a fresh connection until it closes."""
    async with await ChatClient.connect(url, "mallory") as client:
        for _ in range(20000):
            if client.closed.is_set():
                break
            try:
                await client.send_frame('{"type":"ping"}')
            except Exception:  # the server closed the socket under us
                break
            # send() does not yield while the socket takes the bytes: let the
            # reader take the close frame before the gateway's 2 s abort would
            # reset the connection and drop it unread (1006 instead of 1008).
            await asyncio.sleep(0)
        await asyncio.wait_for(client.closed.wait(), 20)
        return client.close_code


async def _all_up(cluster: LocalCluster) -> bool:
    """True while every process runs, every node is SERVING and every gateway ready."""
    if not all(cluster.is_running(name) for name in cluster.procs):
        return False
    for node in cluster.node_ids:
        if not await grpc_serving(cluster.node_addr(node), seconds=5):
            return False
    gateways = range(len(cluster.gateway_names))
    return all([await http_ready(cluster.gateway_http(i), seconds=5) for i in gateways])


def _logged_failures(cluster: LocalCluster) -> list[str]:
    """Log lines of every process that report an error or a traceback."""
    found: list[str] = []
    for name in cluster.procs:
        text = cluster.log_path(name).read_text(errors="replace")
        found += [
            f"{name}: {line[:300]}"
            for line in text.splitlines()
            if '"level": "error"' in line or '"level": "critical"' in line or "Traceback" in line
        ]
    return found


async def test_hostile_client_beside_chatters(cluster: LocalCluster) -> None:
    """Bad frames get errors, abuse closes only the abuser, chatters see no error and no gap."""
    url = cluster.gateway_url()
    chatters = [await ChatClient.connect(url, user) for user in CHATTERS]
    mallory = await ChatClient.connect(url, "mallory")
    chatting: list[asyncio.Task[list[Frame]]] = []
    try:
        owner = chatters[0]
        assert (await owner.create("r"))["type"] == "created"
        for client in [*chatters, mallory]:
            assert (await client.join("r", since=0))["type"] == "joined"
        stop = asyncio.Event()
        chatting = [asyncio.create_task(_chat(client, stop)) for client in chatters]
        await wait_for(
            lambda: all(len(c.messages("r")) >= 3 for c in chatters), 20, message="chat flowing"
        )

        # Frames without a readable id: one bad_request each, in order.
        for raw in RAW_BAD_FRAMES:
            before = len(mallory.frames)
            await mallory.send_frame(raw)
            await asyncio.sleep(HOSTILE_PACE)  # pacing under the rate limit
            error = await mallory.next_of("error", timeout=20)
            assert error["code"] == "bad_request", (raw[:80], error)
            assert "id" not in error or error["id"] is None, (raw[:80], error)
            assert isinstance(error["message"], str) and error["message"]
            assert len(mallory.frames) > before
        for payload in (b"\x00\xff\xfe", b'{"type":"ping","id":"bin"}', b""):
            await mallory.ws.send(payload)  # a binary frame
            await asyncio.sleep(HOSTILE_PACE)
            error = await mallory.next_of("error", timeout=20)
            assert error["code"] == "bad_request", (payload, error)

        # Frames whose id can be read: the error echoes it.
        for n, (frame, code) in enumerate(_bad_requests()):
            await asyncio.sleep(HOSTILE_PACE)
            if isinstance(frame, dict):
                reply = await mallory.request({**frame, "id": "bad"}, timeout=20)
            else:
                await mallory.send_frame(frame)
                reply = await mallory.next_of("error", timeout=20, where=lambda f: "id" in f)
            shown = str(frame)[:120]
            assert (reply["type"], reply.get("code"), reply.get("id")) == ("error", code, "bad"), (
                shown,
                reply,
            )
            if n % 10 == 0:
                await asyncio.sleep(HOSTILE_PACE)
                assert (await mallory.ping())["type"] == "pong", shown

        # The limits themselves are fine: 1 and 4000 characters are accepted.
        for text in ("x", "y" * 4000, "é" * 4000, "😀" * 10):
            assert (await mallory.send("r", text))["type"] == "ack"

        # Abuse on connections of its own: closed with 1009 and 1008, nobody else is.
        assert await _abuse_with_a_huge_frame(url) == 1009
        assert await _abuse_with_a_flood(url) == 1008
        assert not mallory.closed.is_set()
        assert (await mallory.ping())["type"] == "pong"

        stop.set()
        replies = await asyncio.gather(*chatting)
        for client, sent in zip(chatters, replies, strict=True):
            assert all(r["type"] == "ack" for r in sent), (client.user, sent)
        last = (await mallory.send("r", "bye"))["seq"]
        for client in [*chatters, mallory]:
            await client.wait_deliveries("r", last, timeout=30)
        reference = [(f["seq"], f["type"], f.get("text")) for f in chatters[0].deliveries["r"]]
        assert [seq for seq, _, _ in reference] == list(range(1, last + 1))
        for client in [*chatters, mallory]:
            seen = [(f["seq"], f["type"], f.get("text")) for f in client.deliveries["r"]]
            assert seen == reference, client.user
        for client in chatters:
            errors = [f for f in client.frames if f.get("type") == "error"]
            assert not errors, (client.user, errors[:3])
            assert not client.closed.is_set(), client.user
        # The room's stored log is what everyone saw.
        history = await chatters[1].history("r", limit=500)
        stored = [(m["seq"], m["type"], m.get("text")) for m in history["messages"]]
        assert stored == reference[-len(stored) :]
        assert await _all_up(cluster)
        assert not _logged_failures(cluster)
    finally:
        for task in chatting:
            task.cancel()
        await asyncio.gather(*chatting, return_exceptions=True)
        await asyncio.gather(*(c.close() for c in [*chatters, mallory]), return_exceptions=True)


async def test_hostile_user_names_are_refused_with_401(cluster: LocalCluster) -> None:
    """A handshake whose ?user= is not a valid user name is refused with HTTP 401."""
    url = cluster.gateway_url()
    hostile = [
        "../x",
        "..",
        "a/b",
        "x" * 33,
        "x" * 1000,
        "émile",
        "😀",
        "Alice",
        "",
        " alice",
        "alice\u0000",
        "-alice",
        "<script>",
        "alice&user=bob",
    ]
    for user in hostile:
        assert await _handshake_status(f"{url}?user={quote(user, safe='')}") == 401, user
    assert await _handshake_status(url) == 401  # no user at all
    # The longest valid name still connects, and the gateway is none the worse.
    async with await ChatClient.connect(url, "x" * 32) as client:
        assert (await client.ping())["type"] == "pong"
    assert await _all_up(cluster)
    assert not _logged_failures(cluster)
