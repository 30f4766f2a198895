"""A durable LogStore in one SQLite file per node.

WAL mode with `synchronous=FULL`: every `write` is one transaction whose
commit fsyncs the WAL before it returns, so a batch that `write` accepted
survives a crash of the process or the machine. One transaction per batch is
the group commit: a batch covering many rooms costs one fsync.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from parley.room.entries import EntryKind, HardState, LogEntry, RoomRecord, RoomWrite
from parley.room.memory_store import check_write

SCHEMA_VERSION = 1
"""Stored in `PRAGMA user_version`; bump it (and migrate) when the tables change."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    room TEXT NOT NULL,
    idx INTEGER NOT NULL CHECK (idx >= 1),
    epoch INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    user TEXT NOT NULL,
    text TEXT NOT NULL,
    ts_ms INTEGER NOT NULL,
    client_msg_id TEXT NOT NULL,
    PRIMARY KEY (room, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS hard_state (
    room TEXT NOT NULL PRIMARY KEY,
    epoch INTEGER NOT NULL,
    voted_for TEXT NOT NULL
) WITHOUT ROWID;
"""
# WITHOUT ROWID: rows live in the primary-key b-tree, so a room's entries are
# stored together in index order (load and truncate are range scans) and there
# is no second index to maintain on every append.

_INSERT_ENTRY = (
    "INSERT INTO entries (room, idx, epoch, kind, seq, user, text, ts_ms, client_msg_id)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_UPSERT_HARD = (
    "INSERT INTO hard_state (room, epoch, voted_for) VALUES (?, ?, ?)"
    " ON CONFLICT (room) DO UPDATE SET epoch = excluded.epoch, voted_for = excluded.voted_for"
)


class SchemaVersionError(RuntimeError):
    """The database was written by a newer Parley with a schema we do not know."""


class StoreFailedError(RuntimeError):
    """An earlier commit failed, so what is on disk is unknown; restart the node."""


class SqliteLogStore:
    """A LogStore backed by one SQLite database file.

    Not thread-safe: the node calls it from one worker thread at a time (the
    connection is opened with `check_same_thread=False` so that thread need
    not be the one that created the store).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Open (or create) the database at `path`, creating parent directories.

        Args:
            path: The database file, e.g. `<data_dir>/<node_id>.db`.

        Raises:
            SchemaVersionError: If the file has a newer schema version.
            sqlite3.Error: If the file cannot be opened as a database.
        """
        self.path = Path(path)
        """The database file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        # isolation_level=None: no implicit transactions; `write` issues its
        # own BEGIN/COMMIT so one batch is exactly one transaction.
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._failed: BaseException | None = None
        try:
            self._conn.execute("PRAGMA journal_mode = WAL")
            # FULL, not NORMAL: in WAL mode NORMAL skips the fsync at commit,
            # and acknowledgements are sent as soon as `write` returns.
            self._conn.execute("PRAGMA synchronous = FULL")
            self._migrate()
        except BaseException:
            self._conn.close()
            raise
        if created:
            _fsync_dir(self.path.parent)

    def _migrate(self) -> None:
        """Create the tables in a new database, or check an existing one's version."""
        (version,) = self._conn.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{self.path}: schema version {version} is newer than {SCHEMA_VERSION}"
            )
        if version == SCHEMA_VERSION:
            return
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._conn.execute(statement)
            self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

    def load(self) -> dict[str, RoomRecord]:
        """Every stored room replica, sorted by room name, entries by index.

        Rooms that have only a hard state (a vote, no entries) are included.

        Returns:
            Fresh records the caller owns.
        """
        records: dict[str, RoomRecord] = {}
        for room, epoch, voted_for in self._conn.execute(
            "SELECT room, epoch, voted_for FROM hard_state ORDER BY room"
        ):
            records[room] = RoomRecord(
                room=room, hard=HardState(epoch=epoch, voted_for=voted_for), entries=[]
            )
        record: RoomRecord | None = None
        for row in self._conn.execute(
            "SELECT room, idx, epoch, kind, seq, user, text, ts_ms, client_msg_id"
            " FROM entries ORDER BY room, idx"
        ):
            room = row[0]
            if record is None or record.room != room:
                record = records.get(room)
                if record is None:
                    record = records[room] = RoomRecord(room=room, hard=HardState(), entries=[])
            record.entries.append(
                LogEntry(
                    index=row[1],
                    epoch=row[2],
                    kind=EntryKind(row[3]),
                    seq=row[4],
                    user=row[5],
                    text=row[6],
                    ts_ms=row[7],
                    client_msg_id=row[8],
                )
            )
        return dict(sorted(records.items()))

    def write(self, batch: Sequence[RoomWrite]) -> None:
        """Apply every write of the batch in one transaction and fsync it.

        Args:
            batch: Writes to apply in order; one room may appear more than once.

        Raises:
            ValueError: If a write would leave a log non-contiguous (see
                `check_write`); the batch is rolled back, the store stays usable.
            sqlite3.Error: If SQLite rejects a statement (rolled back, store
                usable) or the commit fails (then StoreFailedError from now on).
            StoreFailedError: If an earlier commit failed.
        """
        if self._failed is not None:
            raise StoreFailedError(f"{self.path}: an earlier commit failed") from self._failed
        if not batch:
            return
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for write in batch:
                self._apply(write)
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except BaseException as exc:
            # After a failed fsync the kernel may have dropped the dirty pages
            # and what a later read returns need not be on disk (PostgreSQL's
            # "fsyncgate"); refuse to go on rather than ack on top of it.
            self._failed = exc
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise

    def _apply(self, write: RoomWrite) -> None:
        """Run one room's write inside the open transaction."""
        conn = self._conn
        if write.truncate_from is not None and write.truncate_from >= 1:
            conn.execute(
                "DELETE FROM entries WHERE room = ? AND idx >= ?",
                (write.room, write.truncate_from),
            )
        if write.entries or write.truncate_from is not None:
            # Read the last index after the delete so check_write sees the
            # same log the memory store would; a primary-key seek, cheap.
            (last,) = conn.execute(
                "SELECT COALESCE(MAX(idx), 0) FROM entries WHERE room = ?", (write.room,)
            ).fetchone()
            check_write(write, last)
        if write.entries:
            conn.executemany(
                _INSERT_ENTRY,
                [
                    (
                        write.room,
                        e.index,
                        e.epoch,
                        int(e.kind),
                        e.seq,
                        e.user,
                        e.text,
                        e.ts_ms,
                        e.client_msg_id,
                    )
                    for e in write.entries
                ],
            )
        if write.hard is not None:
            conn.execute(_UPSERT_HARD, (write.room, write.hard.epoch, write.hard.voted_for))

    def close(self) -> None:
        """Close the connection (checkpointing the WAL); safe to call twice."""
        self._conn.close()


def _fsync_dir(directory: Path) -> None:
    """Make a newly created file's directory entry durable (POSIX only)."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
