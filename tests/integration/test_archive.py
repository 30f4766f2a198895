"""The PostgreSQL archive, with a real server the test starts itself."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
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
