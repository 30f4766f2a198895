"""Retention on real processes: entries past a room's policy leave every
replica's store and `history`; a join whose `since` is older than what is
kept says so (`truncated`, `first_seq`) and gets what is kept."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from support.client import ChatClient
from support.cluster import LocalCluster
from support.wait import wait_for

pytestmark = pytest.mark.slow


def stored_seqs(cluster: LocalCluster, node: str, room: str) -> set[int]:
    path = cluster.tmp_path / "data" / node / f"{node}.db"
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
        rows = db.execute("SELECT seq FROM entries WHERE room = ? AND kind = 2", (room,))
        return {seq for (seq,) in rows}


async def test_retention_by_count_and_by_age(tmp_path: Path) -> None:
    cluster = LocalCluster(
        tmp_path,
        nodes=3,
        gateways=1,
        store="sqlite",
        # the nodes' default keeps messages of the last hour; one room keeps
        # only its last 20, another those of the last 2 seconds
        node_args=["--retention-seconds", "3600", "--retention-sweep-seconds", "0.3"],
        gateway_args=["--rate-limit", "10000", "--rate-burst", "10000"],
    )
    try:
        await cluster.start()
        async with await ChatClient.connect(cluster.gateway_url(), "alice") as alice:
            created = await alice.request(
                {"type": "create", "room": "short", "retention": {"messages": 20}}
            )
            assert created["type"] == "created", created
            created = await alice.request(
                {"type": "create", "room": "brief", "retention": {"seconds": 2}}
            )
            assert created["type"] == "created", created
            assert (await alice.create("keeps"))["type"] == "created"
            for i in range(200):
                for room in ("short", "brief", "keeps"):
                    assert (await alice.send(room, f"m{i}", msg_id=f"{room}-{i}"))["type"] == "ack"
            # by count: the last 20 messages (seqs 181..200) on every replica
            for node in cluster.node_ids:
                await wait_for(
                    lambda n=node: min(stored_seqs(cluster, n, "short")) >= 181,
                    20,
                    message=f"{node} deletes what room 'short' no longer keeps",
                )
                assert stored_seqs(cluster, node, "short") == set(range(181, 201))
            history = await alice.history("short", limit=100)
            assert [m["seq"] for m in history["messages"]] == list(range(181, 201))
            joined = await alice.join("short", since=10)
            assert joined["truncated"] is True and joined["first_seq"] == 181, joined
            first = await alice.next_of("message", room="short")
            assert first["seq"] == 181
            # a since inside what is kept: no marker
            async with await ChatClient.connect(cluster.gateway_url(), "bob") as bob:
                joined = await bob.join("short", since=190)
                assert "truncated" not in joined, joined
                assert (await bob.next_of("message", room="short"))["seq"] == 191
            # by age: after 2 s without traffic, only what came later stays
            await wait_for(
                lambda: all(not stored_seqs(cluster, n, "brief") for n in cluster.node_ids),
                20,
                message="room 'brief' forgets its messages after 2 s",
            )
            assert (await alice.send("brief", "late", msg_id="brief-late"))["type"] == "ack"
            history = await alice.history("brief")
            assert [m["text"] for m in history["messages"]] == ["late"]
            # the default (an hour) keeps everything of the third room
            history = await alice.history("keeps", limit=500)
            assert len([m for m in history["messages"] if m["type"] == "message"]) == 200
            assert all(len(stored_seqs(cluster, n, "keeps")) == 200 for n in cluster.node_ids)
    finally:
        await cluster.stop()
