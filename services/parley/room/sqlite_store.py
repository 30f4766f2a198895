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
from operator import attrgetter
from pathlib import Path

from parley.room.entries import EntryKind, HardState, LogEntry, RoomRecord, RoomWrite
from parley.room.memory_store import check_write

SCHEMA_VERSION = 2
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
    UNIQUE (room, idx)
);
CREATE TABLE IF NOT EXISTS hard_state (
    room TEXT NOT NULL PRIMARY KEY,
    epoch INTEGER NOT NULL,
    voted_for TEXT NOT NULL,
    config_floor INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
"""
# Entries are a rowid table, appended in commit order, with (room, idx) as a
# unique index rather than a WITHOUT ROWID primary key. Clustering whole rows
# by room dirtied ~1.9 pages per room per commit (each room's tail lives on
# its own leaf page), so a batch over 1000 rooms wrote ~8 MB of WAL and took
# ~55 ms; with the narrow index it is ~1.2 pages per room and about twice as
# fast. The index still makes truncation a range delete and (room, idx) unique.

_INSERT_ENTRY = (
    "INSERT INTO entries (room, idx, epoch, kind, seq, user, text, ts_ms, client_msg_id)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_UPSERT_HARD = (
    "INSERT INTO hard_state (room, epoch, voted_for, config_floor) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (room) DO UPDATE SET epoch = excluded.epoch, voted_for = excluded.voted_for,"
    " config_floor = excluded.config_floor"
)


_KINDS = {kind.value: kind for kind in EntryKind}
_entry_index = attrgetter("index")


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
        # The last index of each room's committed log, filled on first use and
        # updated after each commit, so checking a batch needs no queries.
        self._last: dict[str, int] = {}
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
            if version == 1:  # version 2 added hard_state.config_floor
                self._conn.execute(
                    "ALTER TABLE hard_state ADD COLUMN config_floor INTEGER NOT NULL DEFAULT 0"
                )
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
        for room, epoch, voted_for, floor in self._conn.execute(
            "SELECT room, epoch, voted_for, config_floor FROM hard_state ORDER BY room"
        ):
            records[room] = RoomRecord(
                room=room,
                hard=HardState(epoch=epoch, voted_for=voted_for, config_floor=floor),
                entries=[],
            )
        # Read in rowid (append) order: a sequential scan of the table, where
        # ORDER BY room, idx would look every row up through the index.
        for row in self._conn.execute(
            "SELECT room, idx, epoch, kind, seq, user, text, ts_ms, client_msg_id"
            " FROM entries ORDER BY rowid"
        ):
            room = row[0]
            record = records.get(room)
            if record is None:
                record = records[room] = RoomRecord(room=room, hard=HardState(), entries=[])
            # Positional and a dict for the kind: load runs over every entry
            # at start-up, and this is about twice as fast as keywords + EntryKind().
            record.entries.append(
                LogEntry(row[1], row[2], _KINDS[row[3]], row[4], row[5], row[6], row[7], row[8])
            )
        for record in records.values():
            # Append order already is index order (a log only grows at its end
            # and new rowids exceed old ones); sorting an ordered list is one
            # linear pass, and keeps load right even if rowids were reused.
            record.entries.sort(key=_entry_index)
        return dict(sorted(records.items()))

    def write(self, batch: Sequence[RoomWrite]) -> None:
        """Apply every write of the batch in one transaction and fsync it.

        Args:
            batch: Writes to apply in order; one room may appear more than once.

        Raises:
            ValueError: If a write would leave a log non-contiguous (see
                `check_write`); nothing is written, the store stays usable.
            sqlite3.Error: If SQLite rejects a statement (rolled back, store
                usable) or the commit fails (then StoreFailedError from now on).
            StoreFailedError: If an earlier commit failed.
        """
        if self._failed is not None:
            raise StoreFailedError(f"{self.path}: an earlier commit failed") from self._failed
        if not batch:
            return
        # Check the whole batch first, against cached last indexes: no query
        # per room, and a bad write fails before anything is written.
        last: dict[str, int] = {}
        for write in batch:
            current = last.get(write.room)
            if current is None:
                current = self._last_index(write.room)
            last[write.room] = check_write(write, current)
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            self._apply(batch)
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
        self._last.update(last)

    def _last_index(self, room: str) -> int:
        """The index of the room's last committed entry (0 if none), cached."""
        last = self._last.get(room)
        if last is None:
            (last,) = self._conn.execute(
                "SELECT COALESCE(MAX(idx), 0) FROM entries WHERE room = ?", (room,)
            ).fetchone()
            self._last[room] = last
        return last

    def _apply(self, batch: Sequence[RoomWrite]) -> None:
        """Run the batch's statements inside the open transaction.

        Entries of all rooms go in through one `executemany`, and hard states
        through another, so a batch over many rooms costs few SQLite calls.
        """
        conn = self._conn
        rows: list[tuple[str, int, int, int, int, str, str, int, str]] = []
        hard: dict[str, tuple[str, int, str, int]] = {}
        for write in batch:
            if write.drop:
                if rows:
                    conn.executemany(_INSERT_ENTRY, rows)
                    rows = []
                hard.pop(write.room, None)
                conn.execute("DELETE FROM entries WHERE room = ?", (write.room,))
                conn.execute("DELETE FROM hard_state WHERE room = ?", (write.room,))
            if write.truncate_from is not None:
                # Rows queued earlier in this batch may be among those this
                # delete must remove: insert them first (truncation is rare).
                if rows:
                    conn.executemany(_INSERT_ENTRY, rows)
                    rows = []
                conn.execute(
                    "DELETE FROM entries WHERE room = ? AND idx >= ?",
                    (write.room, write.truncate_from),
                )
            room = write.room
            rows.extend(
                (
                    room,
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
            )
            if write.hard is not None:
                hard[room] = (room, write.hard.epoch, write.hard.voted_for, write.hard.config_floor)
        if rows:
            conn.executemany(_INSERT_ENTRY, rows)
        if hard:
            conn.executemany(_UPSERT_HARD, hard.values())

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
