"""The archive's database side: one table, written idempotently in batches.

psycopg 3 with its async connection pool; the DSN is libpq's (host, port,
user, password, sslmode=verify-full ... or the PG* environment variables).
"""

from __future__ import annotations

from collections.abc import Sequence

from psycopg_pool import AsyncConnectionPool

from parley.archive.rows import Row, from_row
from parley.room.entries import ANNOTATION_KINDS, LogEntry

MIGRATION = """
CREATE TABLE IF NOT EXISTS parley_entries (
    room   text        NOT NULL,
    seq    bigint      NOT NULL,
    kind   text        NOT NULL,
    sender text        NOT NULL,
    body   text        NOT NULL,
    ts     timestamptz NOT NULL,
    target bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (room, seq)
)
"""
"""The table the issue names, plus `target` (the message an edit, unsend or
reaction is about), so archived history folds as the room's does."""

INSERT = """
INSERT INTO parley_entries (room, seq, kind, sender, body, ts, target)
VALUES (%s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (room, seq) DO NOTHING
"""
"""A retried or repeated write changes nothing: (room, seq) names one entry
forever (seqs are never reused), so a row already there is this row."""

_ANNOTATION_NAMES = tuple(kind.name.lower() for kind in ANNOTATION_KINDS)


class PostgresArchive:
    """A pool of connections to the archive database."""

    def __init__(self, dsn: str, *, max_size: int = 4, timeout: float = 5.0) -> None:
        self._pool = AsyncConnectionPool(
            dsn, min_size=1, max_size=max_size, timeout=timeout, open=False
        )
        self._timeout = timeout

    async def open(self) -> None:
        """Open the pool without waiting for the database (chat must start
        while it is down); `migrate()` is retried by the archiver."""
        await self._pool.open(wait=False)

    async def close(self) -> None:
        await self._pool.close()

    async def migrate(self) -> None:
        """Create the table if it is missing."""
        async with self._pool.connection(self._timeout) as conn:
            await conn.execute(MIGRATION)

    async def write(self, rows: Sequence[Row]) -> None:
        """Insert rows in one transaction; rows already there are left alone."""
        async with self._pool.connection(self._timeout) as conn, conn.cursor() as cursor:
            await cursor.executemany(INSERT, rows)

    async def before(self, room: str, before_seq: int, limit: int) -> list[LogEntry]:
        """The visible entries of `room` with seq < before_seq, the last `limit`, oldest first."""
        async with self._pool.connection(self._timeout) as conn:
            cursor = await conn.execute(
                "SELECT seq, kind, sender, body, ts, target FROM parley_entries"
                " WHERE room = %s AND seq < %s ORDER BY seq DESC LIMIT %s",
                (room, before_seq, limit),
            )
            rows = await cursor.fetchall()
        return [from_row(row) for row in reversed(rows)]

    async def annotations(self, room: str, first_seq: int, last_seq: int) -> list[LogEntry]:
        """Archived edits, unsends and reactions about messages first_seq..last_seq, in order."""
        async with self._pool.connection(self._timeout) as conn:
            cursor = await conn.execute(
                "SELECT seq, kind, sender, body, ts, target FROM parley_entries"
                " WHERE room = %s AND target BETWEEN %s AND %s AND kind = ANY(%s)"
                " ORDER BY seq",
                (room, first_seq, last_seq, list(_ANNOTATION_NAMES)),
            )
            rows = await cursor.fetchall()
        return [from_row(row) for row in rows]
