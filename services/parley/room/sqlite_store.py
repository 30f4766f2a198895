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
import threading
import time
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

from parley.room.entries import ANNOTATION_KINDS, VISIBLE_KINDS, EntryKind, HardState, LogEntry
from parley.room.memory_store import check_write
from parley.room.records import RoomRecord, RoomWrite, Snapshot
from parley.room.state import RoomState
from parley.room.store import MAX_HELD, CorruptionError, StoreFullError

SCHEMA_VERSION = 4
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
    crc INTEGER,
    target INTEGER NOT NULL DEFAULT 0,
    UNIQUE (room, idx)
);
CREATE INDEX IF NOT EXISTS entries_by_seq ON entries (room, seq);
CREATE TABLE IF NOT EXISTS snapshots (
    room TEXT NOT NULL PRIMARY KEY,
    idx INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    state BLOB NOT NULL,
    crc INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS staged (
    room TEXT NOT NULL,
    idx INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    user TEXT NOT NULL,
    text TEXT NOT NULL,
    ts_ms INTEGER NOT NULL,
    client_msg_id TEXT NOT NULL,
    crc INTEGER,
    target INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (room, idx)
) WITHOUT ROWID;
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
# `entries_by_seq` serves history pages by seq. Each row carries a CRC-32 of
# its fields (`entry_crc`): a flipped bit is found on load or read, never
# served (NULL: a row from before version 3, unchecked).

_COLUMNS = "room, idx, epoch, kind, seq, user, text, ts_ms, client_msg_id, crc, target"
_INSERT_ENTRY = f"INSERT INTO entries ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_STAGE_ENTRY = (
    f"INSERT OR REPLACE INTO staged ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SELECT_ENTRY = (
    "SELECT idx, epoch, kind, seq, user, text, ts_ms, client_msg_id, crc, target FROM entries"
)
_VISIBLE = ",".join(str(int(k)) for k in sorted(VISIBLE_KINDS))
_ANNOTATIONS = ",".join(str(int(k)) for k in sorted(ANNOTATION_KINDS))
# (created after the migrations: a table from before version 4 has no target yet)
_TARGET_INDEX = (
    "CREATE INDEX IF NOT EXISTS entries_by_target ON entries (room, target) WHERE target > 0"
)
_UPSERT_SNAPSHOT = (
    "INSERT INTO snapshots (room, idx, epoch, state, crc) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (room) DO UPDATE SET idx = excluded.idx, epoch = excluded.epoch,"
    " state = excluded.state, crc = excluded.crc"
)
_UPSERT_HARD = (
    "INSERT INTO hard_state (room, epoch, voted_for, config_floor) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (room) DO UPDATE SET epoch = excluded.epoch, voted_for = excluded.voted_for,"
    " config_floor = excluded.config_floor"
)


_KINDS = {kind.value: kind for kind in EntryKind}

EntryRow = tuple[str, int, int, int, int, str, str, int, str, int, int]


def entry_crc(
    index: int,
    epoch: int,
    kind: int,
    seq: int,
    user: str,
    text: str,
    ts_ms: int,
    msg_id: str,
    target: int = 0,
) -> int:
    """The CRC-32 stored with an entry (over every field but the room; the
    target only when set, so rows from before version 4 still check)."""
    data = f"{index}\x1f{epoch}\x1f{kind}\x1f{seq}\x1f{user}\x1f{text}\x1f{ts_ms}\x1f{msg_id}"
    if target:
        data += f"\x1f{target}"
    return zlib.crc32(data.encode("utf-8", "surrogatepass"))


def _row(room: str, e: LogEntry) -> EntryRow:
    kind = int(e.kind)
    crc = entry_crc(
        e.index, e.epoch, kind, e.seq, e.user, e.text, e.ts_ms, e.client_msg_id, e.target
    )
    return (
        room, e.index, e.epoch, kind, e.seq, e.user, e.text, e.ts_ms, e.client_msg_id, crc,
        e.target,
    )  # fmt: skip


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

        A file SQLite finds damaged (not a database, malformed) is moved
        aside (`quarantined`) and a new one started: this node then holds no
        rooms, and the other replicas rebuild its copies.

        Raises:
            SchemaVersionError: If the file has a newer schema version.
            sqlite3.Error: If the file cannot be opened as a database.
        """
        self.path = Path(path)
        """The database file."""
        self.quarantined: Path | None = None
        """Where a damaged database file was moved, if one was."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._open()
        except sqlite3.DatabaseError as exc:
            if not _damaged(exc):
                raise
            self._quarantine()
            self._open()

    def _open(self) -> None:
        created = not self.path.exists()
        # isolation_level=None: no implicit transactions; `write` issues its
        # own BEGIN/COMMIT so one batch is exactly one transaction.
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._readers = threading.local()
        # rooms known to have a hard state row
        self._listed: set[str] = set()
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

    def _quarantine(self) -> None:
        """Move the damaged database (and its WAL) aside."""
        with contextlib.suppress(sqlite3.Error):
            self._conn.close()
        aside = self.path.with_name(f"{self.path.name}.damaged-{time.time_ns()}")
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{self.path}{suffix}")
            if source.exists():
                source.rename(f"{aside}{suffix}")
        self.quarantined = aside
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
            if 1 <= version <= 3:  # version 4 added the target of edits and reactions
                for table in ("entries", "staged"):
                    columns = {row[1] for row in self._conn.execute(f"PRAGMA table_info({table})")}
                    if "target" not in columns:  # (a table new here has it)
                        self._conn.execute(
                            f"ALTER TABLE {table} ADD COLUMN target INTEGER NOT NULL DEFAULT 0"
                        )
            if 1 <= version <= 2:  # version 3 added checksums (unchecked when NULL)
                self._conn.execute("ALTER TABLE entries ADD COLUMN crc INTEGER")
            if version == 1:  # version 2 added hard_state.config_floor
                self._conn.execute(
                    "ALTER TABLE hard_state ADD COLUMN config_floor INTEGER NOT NULL DEFAULT 0"
                )
            self._conn.execute(_TARGET_INDEX)
            if version:
                # load lists rooms by hard state: give every stored log one
                self._conn.execute(
                    "INSERT OR IGNORE INTO hard_state (room, epoch, voted_for)"
                    " SELECT DISTINCT room, 0, '' FROM entries"
                )
            self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

    def load(self) -> dict[str, RoomRecord]:
        """Every stored room replica (see `_load`); a database SQLite finds
        damaged is moved aside, and this node starts with nothing."""
        try:
            return self._load()
        except sqlite3.DatabaseError as exc:
            if not _damaged(exc):
                raise
            self._quarantine()
            self._open()
            return {}

    def _load(self) -> dict[str, RoomRecord]:
        """Every stored room replica, sorted by room name: hard state, latest
        snapshot, and the entries after it, by index.

        Rooms that have only a hard state (a vote, no entries) are included.
        A room whose entries or snapshot fail their checksum, or whose log
        after the snapshot has a hole, comes back `damaged`, with no
        entries and no snapshot: its copy must be rebuilt from the others.

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
        snapshots = {
            row[0]: row[1:]
            for row in self._conn.execute("SELECT room, idx, epoch, state, crc FROM snapshots")
        }
        for room in snapshots.keys() - records.keys():
            records[room] = RoomRecord(room=room, hard=HardState(), entries=[])
        for room, record in records.items():
            try:
                after = 0
                if room in snapshots:
                    index, epoch, state, crc = snapshots[room]
                    if zlib.crc32(state) != crc:
                        raise CorruptionError(
                            f"{room}: snapshot at {index} fails its checksum", room
                        )
                    try:
                        record.snapshot = Snapshot(index, epoch, RoomState.from_json(state))
                    except ValueError as exc:
                        raise CorruptionError(f"{room}: snapshot at {index}: {exc}", room) from exc
                    after = index
                record.entries = self._read(room, after, None, None)
                for expected, entry in enumerate(record.entries, start=after + 1):
                    if entry.index != expected:
                        raise CorruptionError(f"{room}: entry {expected} is missing", room)
                self._last[room] = record.entries[-1].index if record.entries else after
                self._listed.add(room)
            except CorruptionError as exc:
                record.entries, record.snapshot, record.damaged = [], None, str(exc)
        # (a row load needed to find a log that was since truncated away)
        blank = HardState()
        return {
            room: record
            for room, record in sorted(records.items())
            if record.entries or record.snapshot or record.damaged or record.hard != blank
        }

    def _reader(self) -> sqlite3.Connection:
        """This thread's read connection (WAL readers do not wait for the writer)."""
        conn: sqlite3.Connection | None = getattr(self._readers, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._readers.conn = conn
        return conn

    def _read(
        self,
        room: str,
        after: int,
        upto: int | None,
        limit: int | None,
        conn: sqlite3.Connection | None = None,
    ) -> list[LogEntry]:
        sql = _SELECT_ENTRY + " WHERE room = ? AND idx > ?"
        args: list[object] = [room, after]
        if upto is not None:
            sql += " AND idx <= ?"
            args.append(upto)
        sql += " ORDER BY idx"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [_entry(room, row) for row in (conn or self._conn).execute(sql, args)]

    def entries(self, room: str, after: int, upto: int, limit: int) -> list[LogEntry]:
        """Stored entries with after < index <= upto, in order, at most limit.

        Raises:
            CorruptionError: if one fails its checksum.
        """
        return self._read(room, after, upto, limit, self._reader())

    def visible_before(
        self, room: str, before_seq: int | None, upto: int, limit: int
    ) -> list[LogEntry]:
        """The last `limit` visible entries at index <= upto with seq <
        before_seq (None: any), in order.

        Raises:
            CorruptionError: if one fails its checksum.
        """
        rows = self._reader().execute(
            _SELECT_ENTRY + f" WHERE room = ? AND seq < ? AND idx <= ? AND kind IN ({_VISIBLE})"
            " ORDER BY seq DESC LIMIT ?",
            (room, before_seq if before_seq is not None else 2**62, upto, limit),
        )
        found = [_entry(room, row) for row in rows]
        found.reverse()
        return found

    def visible_from(self, room: str, from_seq: int, upto: int, limit: int) -> list[LogEntry]:
        """The first `limit` visible entries at index <= upto with seq >=
        from_seq, in order.

        Raises:
            CorruptionError: if one fails its checksum.
        """
        rows = self._reader().execute(
            _SELECT_ENTRY + f" WHERE room = ? AND seq >= ? AND idx <= ? AND kind IN ({_VISIBLE})"
            " ORDER BY seq LIMIT ?",
            (room, from_seq, upto, limit),
        )
        return [_entry(room, row) for row in rows]

    def annotations(self, room: str, first_seq: int, last_seq: int, upto: int) -> list[LogEntry]:
        """Edits, unsends and reactions about seqs first_seq..last_seq, in order.

        Raises:
            CorruptionError: if one fails its checksum.
        """
        rows = self._reader().execute(
            _SELECT_ENTRY + " WHERE room = ? AND target BETWEEN ? AND ? AND target > 0"
            f" AND idx <= ? AND kind IN ({_ANNOTATIONS}) ORDER BY idx",
            (room, first_seq, last_seq, upto),
        )
        return [_entry(room, row) for row in rows]

    def prune(self, room: str, before_seq: int, before_ts_ms: int, held: int = MAX_HELD) -> int:
        """Retention: delete expired entries at or below the stored snapshot.

        Raises:
            StoreFullError: the disk is full.
        """
        if self._failed is not None:
            raise StoreFailedError(f"{self.path}: an earlier commit failed") from self._failed
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            cursor = conn.execute(
                "DELETE FROM entries WHERE room = ?"
                " AND idx <= (SELECT idx FROM snapshots WHERE room = ?)"
                " AND (seq < ? OR ts_ms < ?) AND seq < ?",
                (room, room, before_seq, before_ts_ms, held),
            )
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error) and _full(exc):
                raise StoreFullError(f"{self.path}: the disk is full") from exc
            raise
        self._commit()
        return cursor.rowcount

    def stage(self, room: str, entries: Iterable[LogEntry]) -> None:
        """Durably keep committed history aside for the room's next install."""
        if self._failed is not None:
            raise StoreFailedError(f"{self.path}: an earlier commit failed") from self._failed
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(_STAGE_ENTRY, (_row(room, e) for e in entries))
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self._commit()

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
            listed = self._apply(batch)
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error) and _full(exc):
                raise StoreFullError(f"{self.path}: the disk is full") from exc
            raise
        self._commit()
        self._last.update(last)
        self._listed |= listed

    def _commit(self) -> None:
        conn = self._conn
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if not _full(exc):
                self._fail(exc)
                raise
            # no room for the WAL frames: the commit record was never
            # written, so nothing of the transaction is on disk (SQLite may
            # have rolled it back already)
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StoreFullError(f"{self.path}: the disk is full") from exc
        except BaseException as exc:
            self._fail(exc)
            raise

    def _fail(self, exc: BaseException) -> None:
        # After a failed fsync the kernel may have dropped the dirty pages
        # and what a later read returns need not be on disk (PostgreSQL's
        # "fsyncgate"); refuse to go on rather than ack on top of it: only a
        # restart, reading what is really on disk, is safe.
        self._failed = exc
        if self._conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")

    def _last_index(self, room: str) -> int:
        """The index of the room's last committed entry (0 if none), cached."""
        last = self._last.get(room)
        if last is None:
            (last,) = self._conn.execute(
                "SELECT MAX(COALESCE((SELECT MAX(idx) FROM entries WHERE room = ?), 0),"
                " COALESCE((SELECT idx FROM snapshots WHERE room = ?), 0))",
                (room, room),
            ).fetchone()
            self._last[room] = last
        return last

    def _apply(self, batch: Sequence[RoomWrite]) -> set[str]:
        """Run the batch's statements inside the open transaction.

        Entries of all rooms go in through one `executemany`, and hard states
        through another, so a batch over many rooms costs few SQLite calls.

        Returns:
            Rooms given a hard state row (listed once the batch commits).
        """
        conn = self._conn
        listed: set[str] = set()
        rows: list[EntryRow] = []
        hard: dict[str, tuple[str, int, str, int]] = {}

        def flush() -> None:
            # rows queued earlier in this batch may be among those a delete
            # must remove: insert them first (deletes are rare)
            if rows:
                conn.executemany(_INSERT_ENTRY, rows)
                rows.clear()

        for write in batch:
            room = write.room
            if write.drop:
                flush()
                hard.pop(room, None)
                # (a copy made from a snapshot keeps the history staged for it)
                tables = ("entries", "hard_state", "snapshots") + (
                    () if write.install else ("staged",)
                )
                for table in tables:
                    conn.execute(f"DELETE FROM {table} WHERE room = ?", (room,))
            if write.truncate_from is not None:
                flush()
                conn.execute(
                    "DELETE FROM entries WHERE room = ? AND idx >= ?", (room, write.truncate_from)
                )
            snapshot = write.snapshot
            if snapshot is not None:
                state = snapshot.state.to_json()
                conn.execute(
                    _UPSERT_SNAPSHOT,
                    (room, snapshot.index, snapshot.epoch, state, zlib.crc32(state)),
                )
                if write.install:
                    flush()
                    conn.execute(
                        f"INSERT OR REPLACE INTO entries ({_COLUMNS}) SELECT {_COLUMNS}"
                        " FROM staged WHERE room = ? AND idx <= ?",
                        (room, snapshot.index),
                    )
                    # (history staged for a later snapshot stays staged)
                    conn.execute(
                        "DELETE FROM staged WHERE room = ? AND idx <= ?", (room, snapshot.index)
                    )
            if write.entries and room not in self._listed:
                # load finds rooms by their hard state: give each log one
                conn.execute(
                    "INSERT OR IGNORE INTO hard_state (room, epoch, voted_for) VALUES (?, 0, '')",
                    (room,),
                )
                listed.add(room)
            rows.extend(_row(room, e) for e in write.entries)
            if write.hard is not None:
                hard[room] = (room, write.hard.epoch, write.hard.voted_for, write.hard.config_floor)
        flush()
        if hard:
            conn.executemany(_UPSERT_HARD, hard.values())
        return listed

    def close(self) -> None:
        """Close the connections (checkpointing the WAL); safe to call twice."""
        reader: sqlite3.Connection | None = getattr(self._readers, "conn", None)
        if reader is not None:
            reader.close()
        self._conn.close()


def _entry(
    room: str, row: tuple[int, int, int, int, str, str, int, str, int | None, int]
) -> LogEntry:
    """A stored entry, its checksum verified."""
    index, epoch, kind, seq, user, text, ts_ms, msg_id, crc, target = row
    if crc is not None and crc != entry_crc(
        index, epoch, kind, seq, user, text, ts_ms, msg_id, target
    ):
        raise CorruptionError(f"{room}: entry {index} fails its checksum", room)
    try:
        entry_kind = _KINDS[kind]
    except KeyError:
        raise CorruptionError(f"{room}: entry {index} has an unknown kind {kind}", room) from None
    # positional: load runs over many entries, and this is about twice as fast
    return LogEntry(index, epoch, entry_kind, seq, user, text, ts_ms, msg_id, target)


def _full(exc: sqlite3.Error) -> bool:
    """True when SQLite ran out of disk space (SQLITE_FULL)."""
    return getattr(exc, "sqlite_errorname", "") == "SQLITE_FULL"


def _damaged(exc: sqlite3.DatabaseError) -> bool:
    """True when SQLite says the file itself is damaged (not busy, not I/O)."""
    return getattr(exc, "sqlite_errorname", "") in ("SQLITE_CORRUPT", "SQLITE_NOTADB")


def _fsync_dir(directory: Path) -> None:
    """Make a newly created file's directory entry durable (POSIX only)."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
