"""The PostgreSQL archive, with a real server the test starts itself."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg
import pytest
from support.client import ChatClient
from support.cluster import LocalCluster
from support.postgres import PostgresServer, binaries
from support.wait import wait_for

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
async def postgres(tmp_path: Path) -> AsyncIterator[PostgresServer]:
    if binaries() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL is required in CI (Debian package postgresql)")
        pytest.skip("PostgreSQL is not installed (Debian package postgresql)")
    server = PostgresServer(tmp_path / "pg")
    await asyncio.to_thread(server.init)
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(server.stop, "immediate")


async def _rows(dsn: str, room: str | None = None) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        try:
            cursor = await conn.execute(
                "SELECT room, seq, kind, sender, body FROM parley_entries"
                + (" WHERE room = %s" if room else "")
                + " ORDER BY room, seq",
                (room,) if room else (),
            )
        except psycopg.errors.UndefinedTable:
            return []
        return list(await cursor.fetchall())


async def _archived_through(dsn: str, room: str, seq: int) -> bool:
    try:
        rows = await _rows(dsn, room)
    except psycopg.OperationalError:
        return False
    return bool(rows) and rows[-1][1] >= seq


def _archive_args(dsn: str) -> list[str]:
    return ["--archive-dsn", dsn, "--archive-every", "0.2"]


async def test_every_entry_is_archived_once_in_order(
    make_cluster: Callable[..., Awaitable[LocalCluster]], postgres: PostgresServer
) -> None:
    cluster = await make_cluster(node_args=_archive_args(postgres.dsn))
    async with await ChatClient.connect(cluster.gateway_url(0), "alice") as alice:
        await alice.create("arch")
        await alice.join("arch")
        acks = [await alice.send("arch", f"m{i}") for i in range(20)]
        last = acks[-1]["seq"]
        await wait_for(lambda: _archived_through(postgres.dsn, "arch", last), 20,
                       message="the archive caught up")  # fmt: skip
    rows = await _rows(postgres.dsn, "arch")
    assert [r[1] for r in rows] == list(range(0, last + 1))
    assert rows[0][2] == "create"  # (the creator is a member: no join entry)
    assert [(r[3], r[4]) for r in rows if r[2] == "message"] == [
        ("alice", f"m{i}") for i in range(20)
    ]


async def _send_until_acked(client: ChatClient, room: str, text: str, msg_id: str) -> int:
    """Send, retrying the same id through failovers until acknowledged."""
    while True:
        try:
            reply = await client.send(room, text, msg_id)
        except TimeoutError:
            continue
        if reply["type"] == "ack":
            return int(reply["seq"])
        assert reply.get("code") in ("unavailable", "internal", "rate_limited"), reply
        await asyncio.sleep(0.1)  # backoff before the retry, as clients do


async def test_failover_and_a_database_outage_lose_and_double_nothing(
    make_cluster: Callable[..., Awaitable[LocalCluster]], postgres: PostgresServer
) -> None:
    """Publish to three rooms while their administrator is SIGKILLed and
    restarted and the database is stopped and started: afterwards every
    acknowledged message is archived once, in seq order, and every archived
    row is an entry the room committed."""
    rooms = ["ar-0", "ar-1", "ar-2"]
    cluster = await make_cluster(
        store="sqlite", node_args=_archive_args(postgres.dsn),
        gateway_args=["--rate-limit", "1000", "--rate-burst", "1000"],
    )  # fmt: skip
    acked: dict[str, dict[int, str]] = {room: {} for room in rooms}
    stop = asyncio.Event()
    async with await ChatClient.connect(cluster.gateway_url(0), "alice") as alice:
        for room in rooms:
            await alice.create(room)
            await alice.join(room)

        async def publish(room: str) -> None:
            n = 0
            while not stop.is_set():
                n += 1
                text = f"{room} message {n}"
                acked[room][await _send_until_acked(alice, room, text, f"{room}-{n}")] = text

        senders = [asyncio.create_task(publish(room)) for room in rooms]
        await wait_for(lambda: all(len(a) >= 10 for a in acked.values()), 30,
                       message="some traffic")  # fmt: skip
        listing = await alice.rooms()
        admin = next(r["administrator"] for r in listing["rooms"] if r["room"] == "ar-0")
        cluster.kill_node(admin)
        await asyncio.to_thread(postgres.stop)
        before = sum(len(a) for a in acked.values())
        await wait_for(lambda: sum(len(a) for a in acked.values()) >= before + 30, 60,
                       message="chat goes on without the archive and the killed node")  # fmt: skip
        await cluster.restart_node(admin)
        await asyncio.to_thread(postgres.start)
        await wait_for(lambda: sum(len(a) for a in acked.values()) >= before + 60, 60,
                       message="more traffic after both came back")  # fmt: skip
        stop.set()
        await asyncio.gather(*senders)

        for room in rooms:
            last = max(acked[room])
            await wait_for(lambda room=room, last=last: _archived_through(postgres.dsn, room, last),
                           60, message=f"{room} archived")  # fmt: skip
            rows = await _rows(postgres.dsn, room)
            seqs = [row[1] for row in rows]
            assert seqs == list(range(0, seqs[-1] + 1)), f"{room}: a gap or a double"
            by_seq = {row[1]: row for row in rows}
            for seq, text in acked[room].items():
                assert by_seq[seq][2:] == ("message", "alice", text), (room, seq)
            # every archived row is what the room itself holds at that seq
            history = await alice.history(room, limit=500)
            live = {e["seq"]: e for e in history["messages"]}
            for seq, row in by_seq.items():
                if seq in live and row[2] == "message":
                    assert (live[seq]["from"], live[seq]["text"]) == (row[3], row[4])
            assert {s for s, r in by_seq.items() if r[2] == "message"} == set(acked[room])


def _stored_seqs(cluster: LocalCluster, node: str, room: str) -> set[int]:
    path = cluster.tmp_path / "data" / node / f"{node}.db"
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
        rows = db.execute("SELECT seq FROM entries WHERE room = ? AND kind = 2", (room,))
        return {seq for (seq,) in rows}


async def test_history_past_retention_comes_from_the_archive(
    make_cluster: Callable[..., Awaitable[LocalCluster]], postgres: PostgresServer
) -> None:
    """A room keeping its last 10 messages: once they are archived, the room
    logs delete the older ones, and `history` still returns every message as
    the clients saw it live (an old message's edit folded in)."""
    cluster = await make_cluster(
        store="sqlite",
        node_args=[*_archive_args(postgres.dsn), "--retention-sweep-seconds", "0.3"],
        gateway_args=["--rate-limit", "1000", "--rate-burst", "1000"],
    )
    async with await ChatClient.connect(cluster.gateway_url(0), "alice") as alice:
        created = await alice.request(
            {"type": "create", "room": "kept", "retention": {"messages": 10}}
        )
        assert created["type"] == "created"
        await alice.join("kept")
        first = (await alice.send("kept", "m0", "k0"))["seq"]
        edit = await alice.request({"type": "edit", "room": "kept", "seq": first, "text": "m0!"})
        assert edit["type"] == "ack"
        for i in range(1, 40):
            ack = await alice.send("kept", f"m{i}", f"k{i}")
            assert ack["type"] == "ack"
        last = ack["seq"]
        await alice.wait_deliveries("kept", last)
        live = alice.messages("kept")
        await wait_for(lambda: _archived_through(postgres.dsn, "kept", last), 20,
                       message="archived")  # fmt: skip
        for node in cluster.node_ids:
            await wait_for(lambda n=node: len(_stored_seqs(cluster, n, "kept")) <= 11, 20,
                           message=f"{node}'s room log keeps only the last messages")  # fmt: skip
        history = await alice.history("kept", limit=100)
        messages = [m for m in history["messages"] if m.get("kind", "message") == "message"]
        seen = [(m["seq"], m["from"], m["text"]) for m in messages if "target" not in m]
        expected = [(m["seq"], m["from"], m["text"]) for m in live]
        expected[0] = (expected[0][0], "alice", "m0!")  # folded: the latest text
        assert seen == expected
        assert messages[0].get("edited") is True
        # pages before the horizon too
        page = await alice.history("kept", before=first + 5, limit=3)
        assert [m["seq"] for m in page["messages"]] == [first + 2, first + 3, first + 4]
