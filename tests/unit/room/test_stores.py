"""LogStore backends: memory and sqlite behave the same; sqlite survives restarts."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from parley.room.entries import EntryKind, HardState, LogEntry
from parley.room.memory_store import MemoryLogStore
from parley.room.records import RoomWrite, Snapshot
from parley.room.sqlite_store import (
    SCHEMA_VERSION,
    SchemaVersionError,
    SqliteLogStore,
    StoreFailedError,
)
from parley.room.state import RoomState
from parley.room.store import CorruptionError, LogStore, StoreFullError
from parley.room.stores import open_store
from support.smallfs import SmallFilesystem

NODE = "node-0"


def entry(index: int, epoch: int = 1, text: str = "", **kwargs: object) -> LogEntry:
    """A message entry whose seq equals its index (index 1 is the create entry)."""
    kind = EntryKind.CREATE if index == 1 else EntryKind.MESSAGE
    fields: dict[str, object] = {
        "kind": kind,
        "seq": index - 1,
        "user": "alice",
        "text": text or f"m{index}",
        "ts_ms": 1_700_000_000_000 + index,
        "client_msg_id": f"c{index}",
    }
    fields.update(kwargs)
    return LogEntry(index, epoch, **fields)  # type: ignore[arg-type]


def entries(first: int, last: int, epoch: int = 1) -> list[LogEntry]:
    """Entries first..last inclusive, all of one epoch."""
    return [entry(i, epoch) for i in range(first, last + 1)]


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LogStore]:
    """Each backend, opened through open_store as the node does."""
    opened = open_store(request.param, str(tmp_path), NODE)
    yield opened
    opened.close()


def test_empty_store_loads_nothing(store: LogStore) -> None:
    """A new store has no rooms, and an empty batch changes nothing."""
    store.write([])
    assert store.load() == {}


def test_round_trip(store: LogStore) -> None:
    """Entries and hard state come back exactly as written, per room."""
    unicode = entry(3, text="héllo ✓ 🙂 'quoted'; DROP TABLE entries", client_msg_id="x")
    epoch_entry = LogEntry(4, 2, EntryKind.EPOCH, seq=2)
    store.write(
        [
            RoomWrite("general", hard=HardState(1, "node-1"), entries=entries(1, 2)),
            RoomWrite("random", hard=HardState(3, ""), entries=entries(1, 1, epoch=3)),
        ]
    )
    store.write([RoomWrite("general", entries=(unicode, epoch_entry))])
    loaded = store.load()
    assert sorted(loaded) == ["general", "random"]
    assert loaded["general"].room == "general"
    assert loaded["general"].hard == HardState(1, "node-1")
    assert loaded["general"].entries == [*entries(1, 2), unicode, epoch_entry]
    assert loaded["general"].entries[3].kind is EntryKind.EPOCH
    assert loaded["random"].hard == HardState(3, "")
    assert loaded["random"].entries == entries(1, 1, epoch=3)


def test_load_returns_copies(store: LogStore) -> None:
    """Mutating loaded records or the written objects does not change the store."""
    hard = HardState(1, "node-0")
    written = entries(1, 3)
    store.write([RoomWrite("general", hard=hard, entries=written)])
    hard.epoch = 99
    written.clear()
    first = store.load()
    first["general"].entries.clear()
    first["general"].hard.voted_for = "node-9"
    del first["general"]
    again = store.load()
    assert again["general"].hard == HardState(1, "node-0")
    assert again["general"].entries == entries(1, 3)


def test_truncate_then_append_replaces_conflicting_suffix(store: LogStore) -> None:
    """truncate_from drops that index onward before the new entries are appended."""
    store.write([RoomWrite("general", entries=entries(1, 5, epoch=1))])
    replacement = entries(3, 4, epoch=2)
    store.write([RoomWrite("general", truncate_from=3, entries=replacement)])
    assert store.load()["general"].entries == entries(1, 2, epoch=1) + replacement


def test_truncate_only_and_past_the_end(store: LogStore) -> None:
    """Truncating past the end is a no-op; truncating from 1 empties the log."""
    store.write([RoomWrite("general", hard=HardState(1, ""), entries=entries(1, 3))])
    store.write([RoomWrite("general", truncate_from=10)])
    assert store.load()["general"].entries == entries(1, 3)
    store.write([RoomWrite("general", truncate_from=1)])
    record = store.load()["general"]
    assert record.entries == []
    assert record.hard == HardState(1, "")


def test_room_without_entries_or_hard_state_is_not_listed(store: LogStore) -> None:
    """A room truncated to nothing and never voted in leaves no record behind."""
    store.write([RoomWrite("gone", entries=entries(1, 2))])
    store.write([RoomWrite("gone", truncate_from=1), RoomWrite("never", truncate_from=1)])
    assert store.load() == {}


def test_same_room_twice_in_one_batch_applies_in_order(store: LogStore) -> None:
    """Writes in a batch are applied in order, so later ones see earlier ones."""
    store.write(
        [
            RoomWrite("general", hard=HardState(1, "node-0"), entries=entries(1, 3)),
            RoomWrite(
                "general",
                hard=HardState(2, "node-1"),
                truncate_from=2,
                entries=entries(2, 2, epoch=2),
            ),
        ]
    )
    record = store.load()["general"]
    assert record.hard == HardState(2, "node-1")
    assert record.entries == entries(1, 1) + entries(2, 2, epoch=2)


def test_hard_state_only_rooms(store: LogStore) -> None:
    """A room with a vote but no entries is loaded with an empty log."""
    store.write([RoomWrite("quiet", hard=HardState(7, "node-2"))])
    loaded = store.load()
    assert loaded["quiet"].hard == HardState(7, "node-2")
    assert loaded["quiet"].entries == []


def test_hard_state_is_replaced_and_defaults_when_never_written(store: LogStore) -> None:
    """The latest hard state wins; a room with entries only gets HardState()."""
    store.write([RoomWrite("general", hard=HardState(1, "node-0"))])
    store.write([RoomWrite("general", hard=HardState(2, ""))])
    store.write([RoomWrite("random", entries=entries(1, 1))])
    loaded = store.load()
    assert loaded["general"].hard == HardState(2, "")
    assert loaded["random"].hard == HardState()


@pytest.mark.parametrize(
    "bad",
    [
        RoomWrite("general", entries=entries(3, 3)),  # overlaps without truncating
        RoomWrite("general", entries=entries(5, 5)),  # leaves a hole at 4
        RoomWrite("general", entries=[entry(4), entry(6)]),  # hole inside the write
        RoomWrite("general", truncate_from=0),
        RoomWrite("fresh", entries=entries(2, 3)),  # a log starts at index 1
    ],
    ids=["overlap", "gap", "gap-inside", "truncate-zero", "fresh-not-at-1"],
)
def test_non_contiguous_write_is_rejected(store: LogStore, bad: RoomWrite) -> None:
    """A write that would leave holes or duplicates raises ValueError and changes nothing."""
    store.write([RoomWrite("general", entries=entries(1, 3))])
    before = store.load()
    with pytest.raises(ValueError, match="room"):
        store.write([bad])
    assert store.load() == before


def test_many_rooms_in_one_batch_are_atomic(store: LogStore) -> None:
    """A batch over many rooms that fails late leaves none of its writes visible."""
    store.write([RoomWrite("room-00", hard=HardState(1, "node-0"), entries=entries(1, 2))])
    before = store.load()
    batch = [
        RoomWrite(f"room-{i:02d}", hard=HardState(5, "node-1"), entries=entries(1, 3))
        for i in range(1, 50)
    ]
    batch.insert(10, RoomWrite("room-00", truncate_from=2, entries=entries(2, 4, epoch=2)))
    # room-00 already has entries 1..2, so appending 1..3 again must fail; it
    # comes after 40-odd rooms whose writes were already applied in the batch.
    batch.append(RoomWrite("room-00", entries=entries(1, 3)))
    with pytest.raises(ValueError, match="room-00"):
        store.write(batch)
    assert store.load() == before
    # And the store still works: the same batch minus the bad write goes in whole.
    store.write(batch[:-1])
    loaded = store.load()
    assert len(loaded) == 50
    assert loaded["room-00"].entries == entries(1, 1) + entries(2, 4, epoch=2)
    assert loaded["room-49"].entries == entries(1, 3)


def test_open_store_rejects_unknown_kinds_and_bad_ids(tmp_path: Path) -> None:
    """open_store knows memory and sqlite; other kinds and path-like ids are errors."""
    with pytest.raises(ValueError, match="unknown store"):
        open_store("postgres", str(tmp_path), NODE)
    for bad_id in ["", "..", "a/b"]:
        with pytest.raises(ValueError, match="file name"):
            open_store("sqlite", str(tmp_path), bad_id)
    assert isinstance(open_store("memory", str(tmp_path), NODE), MemoryLogStore)


def test_sqlite_file_is_named_after_the_node(tmp_path: Path) -> None:
    """The sqlite store lives at <data_dir>/<node_id>.db, parents created."""
    data_dir = tmp_path / "deep" / "data"
    store = open_store("sqlite", str(data_dir), "parley-node-2")
    try:
        assert isinstance(store, SqliteLogStore)
        assert store.path == data_dir / "parley-node-2.db"
        assert store.path.is_file()
    finally:
        store.close()


def test_sqlite_uses_wal_and_records_schema_version(tmp_path: Path) -> None:
    """The file is in WAL mode with synchronous=FULL and carries the schema version."""
    path = tmp_path / "n.db"
    store = SqliteLogStore(path)
    # synchronous is per connection, so only the store's own one can tell:
    # FULL (2) is what makes write() fsync before it returns.
    assert store._conn.execute("PRAGMA synchronous").fetchone() == (2,)
    store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    conn.close()


def test_sqlite_refuses_a_newer_schema(tmp_path: Path) -> None:
    """Opening a file written by a newer schema fails instead of misreading it."""
    path = tmp_path / "n.db"
    SqliteLogStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(SchemaVersionError):
        SqliteLogStore(path)


def test_sqlite_rolls_back_a_batch_that_fails_inside_sqlite(tmp_path: Path) -> None:
    """An error raised by SQLite itself mid-batch rolls back every room of the batch."""
    store = SqliteLogStore(tmp_path / "n.db")
    try:
        store.write([RoomWrite("general", hard=HardState(1, ""), entries=entries(1, 3))])
        before = store.load()
        unbindable = entry(3, epoch=2, user=object())  # SQLite cannot bind an object
        batch = [RoomWrite(f"room-{i}", entries=entries(1, 5)) for i in range(20)]
        # A truncation mid-batch makes the store send the rows queued so far
        # and delete, so all of that has reached SQLite before the failure.
        batch.append(RoomWrite("general", truncate_from=2, entries=entries(2, 2, epoch=2)))
        batch += [RoomWrite(f"room-{i}", entries=entries(1, 5)) for i in range(20, 40)]
        batch.append(RoomWrite("general", hard=HardState(2, "x"), entries=[unbindable]))
        with pytest.raises(sqlite3.Error):
            store.write(batch)
        assert store.load() == before
        # The failed batch left no trace in the cached last indexes either.
        store.write(batch[:-1])
        loaded = store.load()
        assert len(loaded) == 41
        assert loaded["general"].entries == entries(1, 1) + entries(2, 2, epoch=2)
        assert loaded["general"].hard == HardState(1, "")
    finally:
        store.close()


def test_sqlite_refuses_writes_after_a_failed_commit(tmp_path: Path) -> None:
    """Once a commit fails nothing more is written: the disk state is unknown."""

    class FailingCommit:
        """A connection stand-in whose COMMIT fails, as a failed fsync would."""

        def __init__(self, conn: sqlite3.Connection) -> None:
            self.conn = conn

        def __getattr__(self, name: str) -> object:
            return getattr(self.conn, name)

        def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
            if sql == "COMMIT":
                raise sqlite3.OperationalError("disk I/O error")
            return self.conn.execute(sql, *args)

    store = SqliteLogStore(tmp_path / "n.db")
    real = store._conn
    store._conn = FailingCommit(real)  # type: ignore[assignment]
    try:
        with pytest.raises(sqlite3.OperationalError):
            store.write([RoomWrite("general", entries=entries(1, 1))])
        with pytest.raises(StoreFailedError):
            store.write([RoomWrite("general", entries=entries(1, 1))])
    finally:
        store._conn = real
        store.close()


def test_sqlite_survives_close_and_reopen(tmp_path: Path) -> None:
    """Everything written, including truncations and votes, is there after a reopen."""
    path = tmp_path / "data" / "node-0.db"
    store = SqliteLogStore(path)
    store.write([RoomWrite("general", hard=HardState(1, "node-0"), entries=entries(1, 4))])
    store.write(
        [
            RoomWrite(
                "general",
                hard=HardState(2, "node-1"),
                truncate_from=3,
                entries=entries(3, 3, epoch=2),
            ),
            RoomWrite("quiet", hard=HardState(3, "node-2")),
        ]
    )
    expected = store.load()
    store.close()
    store.close()  # closing twice is harmless
    reopened = SqliteLogStore(path)
    try:
        assert reopened.load() == expected
        assert expected["general"].entries == entries(1, 2) + entries(3, 3, epoch=2)
        reopened.write([RoomWrite("general", entries=[entry(4, epoch=2)])])
        assert reopened.load()["general"].entries[-1] == entry(4, epoch=2)
    finally:
        reopened.close()


_WRITER = textwrap.dedent(
    """
    import sys
    from parley.room.entries import EntryKind, HardState, LogEntry
    from parley.room.records import RoomWrite
    from parley.room.sqlite_store import SqliteLogStore

    store = SqliteLogStore(sys.argv[1])
    for n in range(1, 11):
        store.write([
            RoomWrite(
                f"room-{r}",
                hard=HardState(n, "node-0"),
                entries=[LogEntry(n, n, EntryKind.MESSAGE, n, "bob", f"t{n}", n, f"c{n}")],
            )
            for r in range(100)
        ])
    print("written", flush=True)
    sys.stdin.read()  # wait here, without closing the store, until killed
    """
)


def test_sqlite_batch_survives_sigkill(tmp_path: Path) -> None:
    """A batch whose write() returned is on disk even if the process is SIGKILLed."""
    path = tmp_path / "node-0.db"
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline() == "written\n"
    finally:
        writer.kill()
        writer.wait()
        assert writer.stdout is not None and writer.stdin is not None
        writer.stdout.close()
        writer.stdin.close()
    assert writer.returncode == -9
    store = SqliteLogStore(path)
    try:
        loaded = store.load()
    finally:
        store.close()
    assert len(loaded) == 100
    for r in range(100):
        record = loaded[f"room-{r}"]
        assert record.hard == HardState(10, "node-0")
        assert [e.index for e in record.entries] == list(range(1, 11))
        assert record.entries[-1] == LogEntry(
            10, 10, EntryKind.MESSAGE, 10, "bob", "t10", 10, "c10"
        )


def test_a_version_1_database_gains_the_config_floor(tmp_path: Path) -> None:
    """A store written before hard states had a config floor opens, keeps
    its votes (floor 0), and stores floors from then on."""
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(
            """
            CREATE TABLE entries (
                room TEXT NOT NULL, idx INTEGER NOT NULL CHECK (idx >= 1),
                epoch INTEGER NOT NULL, kind INTEGER NOT NULL, seq INTEGER NOT NULL,
                user TEXT NOT NULL, text TEXT NOT NULL, ts_ms INTEGER NOT NULL,
                client_msg_id TEXT NOT NULL, UNIQUE (room, idx));
            CREATE TABLE hard_state (
                room TEXT NOT NULL PRIMARY KEY, epoch INTEGER NOT NULL,
                voted_for TEXT NOT NULL) WITHOUT ROWID;
            INSERT INTO hard_state VALUES ('lobby', 3, 'n1');
            PRAGMA user_version = 1;
            """
        )
    store = SqliteLogStore(path)
    try:
        assert store.load()["lobby"].hard == HardState(3, "n1", 0)
        store.write([RoomWrite("lobby", hard=HardState(4, "n2", 17))])
        assert store.load()["lobby"].hard == HardState(4, "n2", 17)
    finally:
        store.close()


# --------------------------------------------------- snapshots and history


def state_after(log: list[LogEntry]) -> RoomState:
    return RoomState.from_entries(log)


def test_a_snapshot_stands_for_the_entries_before_it(store: LogStore) -> None:
    """Load returns the snapshot and only the entries after it; the entries
    before it stay readable as history."""
    log = entries(1, 10)
    store.write([RoomWrite("r", hard=HardState(1, "a"), entries=log)])
    store.write([RoomWrite("r", snapshot=Snapshot(6, 1, state_after(log[:6])))])
    record = store.load()["r"]
    assert record.snapshot is not None
    assert (record.snapshot.index, record.snapshot.epoch) == (6, 1)
    assert record.snapshot.state.to_json() == state_after(log[:6]).to_json()
    assert record.entries == log[6:]
    assert store.entries("r", 0, 10, 100) == log
    assert store.entries("r", 2, 5, 2) == log[2:4]
    # history pages by seq (seq = index - 1 here), bounded by index
    assert store.visible_before("r", None, 6, 3) == log[3:6]
    assert store.visible_before("r", 3, 10, 10) == log[:3]
    assert store.visible_from("r", 4, 8, 2) == log[4:6]
    assert store.visible_from("r", 4, 6, 10) == log[4:6]


def test_an_installed_snapshot_brings_its_staged_history(store: LogStore) -> None:
    """History staged ahead of a snapshot becomes the room's entries when the
    snapshot is installed, replacing what was there; history staged for a
    later snapshot stays staged."""
    leader = entries(1, 12, epoch=2)
    store.write([RoomWrite("r", entries=entries(1, 4, epoch=1))])  # 3, 4 diverge
    store.stage("r", leader[2:8])
    store.stage("r", leader[8:10])
    store.write(
        [
            RoomWrite(
                "r",
                truncate_from=3,
                snapshot=Snapshot(8, 2, state_after(leader[:8])),
                install=True,
            )
        ]
    )
    assert store.entries("r", 0, 100, 100) == [*entries(1, 2, epoch=1), *leader[2:8]]
    store.write([RoomWrite("r", snapshot=Snapshot(10, 2, state_after(leader)), install=True)])
    assert store.entries("r", 8, 100, 100) == leader[8:10]
    store.write([RoomWrite("r", entries=leader[10:12])])
    record = store.load()["r"]
    assert record.snapshot is not None and record.snapshot.index == 10
    assert record.entries == leader[10:12]


def test_a_snapshot_lets_the_log_continue_after_it(store: LogStore) -> None:
    """A write may append right after an installed snapshot's index."""
    leader = entries(1, 9)
    store.write([RoomWrite("r", snapshot=Snapshot(7, 1, state_after(leader[:7])), install=True)])
    store.write([RoomWrite("r", entries=leader[7:9])])
    with pytest.raises(ValueError):
        store.write([RoomWrite("r", entries=[entry(11)])])
    assert [e.index for e in store.load()["r"].entries] == [8, 9]


def test_sqlite_finds_a_flipped_entry_and_marks_the_room_damaged(tmp_path: Path) -> None:
    """An entry changed behind the store's back fails its checksum: load
    returns the room damaged (no entries, its hard state kept) and reads
    raise; other rooms load as before."""
    path = tmp_path / "n.db"
    store = SqliteLogStore(path)
    store.write(
        [
            RoomWrite("bad", hard=HardState(4, "n1"), entries=entries(1, 5)),
            RoomWrite("good", hard=HardState(2, "n2"), entries=entries(1, 3)),
        ]
    )
    store.close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE entries SET text = 'tampered' WHERE room = 'bad' AND idx = 4")
    conn.close()
    store = SqliteLogStore(path)
    try:
        loaded = store.load()
        assert "entry 4 fails its checksum" in loaded["bad"].damaged
        assert loaded["bad"].entries == [] and loaded["bad"].hard == HardState(4, "n1")
        assert loaded["good"].entries == entries(1, 3) and not loaded["good"].damaged
        with pytest.raises(CorruptionError):
            store.entries("bad", 0, 10, 10)
    finally:
        store.close()


def test_sqlite_finds_a_damaged_snapshot_and_a_hole_in_the_log(tmp_path: Path) -> None:
    path = tmp_path / "n.db"
    store = SqliteLogStore(path)
    log = entries(1, 6)
    store.write(
        [
            RoomWrite("snap", entries=log),
            RoomWrite("snap", snapshot=Snapshot(6, 1, state_after(log))),
            RoomWrite("hole", hard=HardState(1, ""), entries=entries(1, 4)),
        ]
    )
    store.close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE snapshots SET state = CAST('{}' AS BLOB) WHERE room = 'snap'")
        conn.execute("DELETE FROM entries WHERE room = 'hole' AND idx = 2")
    conn.close()
    store = SqliteLogStore(path)
    try:
        loaded = store.load()
        assert "snapshot at 6 fails its checksum" in loaded["snap"].damaged
        assert "entry 2 is missing" in loaded["hole"].damaged
    finally:
        store.close()


def test_a_version_2_database_gains_checksums_and_snapshots(tmp_path: Path) -> None:
    """A store from before snapshots opens: its rows (unchecked, no CRC) load
    as before, new rows get checksums, snapshots can be stored."""
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(
            """
            CREATE TABLE entries (
                room TEXT NOT NULL, idx INTEGER NOT NULL CHECK (idx >= 1),
                epoch INTEGER NOT NULL, kind INTEGER NOT NULL, seq INTEGER NOT NULL,
                user TEXT NOT NULL, text TEXT NOT NULL, ts_ms INTEGER NOT NULL,
                client_msg_id TEXT NOT NULL, UNIQUE (room, idx));
            CREATE TABLE hard_state (
                room TEXT NOT NULL PRIMARY KEY, epoch INTEGER NOT NULL,
                voted_for TEXT NOT NULL, config_floor INTEGER NOT NULL DEFAULT 0)
                WITHOUT ROWID;
            INSERT INTO entries VALUES ('lobby', 1, 1, 1, 0, 'alice', 'a,b,c', 5, 'inc');
            INSERT INTO entries VALUES ('orphan', 1, 1, 1, 0, 'bob', 'a', 6, 'inc2');
            INSERT INTO hard_state VALUES ('lobby', 3, 'n1', 0);
            PRAGMA user_version = 2;
            """
        )
    conn.close()
    store = SqliteLogStore(path)
    try:
        loaded = store.load()
        assert [e.text for e in loaded["lobby"].entries] == ["a,b,c"]
        # a log without a hard state row (never voted in) is still found
        assert [e.user for e in loaded["orphan"].entries] == ["bob"]
        log = [loaded["lobby"].entries[0], entry(2)]
        store.write(
            [
                RoomWrite("lobby", entries=[log[1]]),
                RoomWrite("lobby", snapshot=Snapshot(2, 1, state_after(log))),
            ]
        )
        assert store.load()["lobby"].snapshot is not None
        (crc,) = store._conn.execute(
            "SELECT crc FROM entries WHERE room = 'lobby' AND idx = 2"
        ).fetchone()
        assert crc is not None
    finally:
        store.close()


@pytest.mark.parametrize("damage", ["truncate", "garbage", "flip"])
def test_sqlite_moves_a_damaged_file_aside_and_starts_empty(tmp_path: Path, damage: str) -> None:
    """A database file cut short or overwritten while the node was down is
    not trusted: it is moved aside, and the node starts with no rooms (the
    other replicas rebuild them)."""
    path = tmp_path / "n.db"
    store = SqliteLogStore(path)
    store.write(
        [RoomWrite(f"room-{i}", hard=HardState(1, "a"), entries=entries(1, 200)) for i in range(20)]
    )
    store.close()
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 3])
    elif damage == "garbage":
        path.write_bytes(data[:100] + b"\xff" * (len(data) - 100))
    else:  # 40 bytes flipped mid-file: pages SQLite finds malformed
        middle = len(data) // 2
        flipped = bytes(b ^ 0x55 for b in data[middle : middle + 40])
        path.write_bytes(data[:middle] + flipped + data[middle + 40 :])
    store = SqliteLogStore(path)
    try:
        loaded = store.load()
        assert loaded == {} or all(r.damaged for r in loaded.values())
        if not loaded:
            assert store.quarantined is not None and store.quarantined.exists()
        store.write([RoomWrite("fresh", hard=HardState(1, "a"), entries=entries(1, 2))])
        assert store.load()["fresh"].entries == entries(1, 2)
    finally:
        store.close()


def test_sqlite_on_a_full_disk_writes_nothing_and_takes_the_batch_later(tmp_path: Path) -> None:
    """On a full filesystem a batch fails with StoreFullError and leaves no
    trace; the store stays usable, and the same batch goes in once there is
    room again."""
    with SmallFilesystem(tmp_path / "disk", 4 * 2**20) as disk:
        store = SqliteLogStore(disk.path / "n.db")
        try:
            store.write([RoomWrite("r", hard=HardState(1, "a"), entries=entries(1, 10))])
            disk.fill()
            big = [RoomWrite("r", entries=[entry(i, text="y" * 2000) for i in range(11, 400)])]
            with pytest.raises(StoreFullError):
                store.write(big)
            assert store.load()["r"].entries == entries(1, 10)
            disk.free()
            store.write(big)
            loaded = store.load()["r"].entries
            assert [e.index for e in loaded] == list(range(1, 400))
        finally:
            store.close()


def _about(index: int, kind: EntryKind, target: int, user: str = "bob", text: str = "") -> LogEntry:
    return LogEntry(index, 1, kind, index - 1, user, text, 10, f"a{index}", target=target)


def test_edits_and_reactions_keep_their_target_and_are_found_by_it(store: LogStore) -> None:
    log = [
        *entries(1, 3),
        _about(4, EntryKind.EDIT, 2, "alice", "hi!"),
        _about(5, EntryKind.REACT, 1, text="👍"),
        _about(6, EntryKind.UNSEND, 2),
    ]
    store.write([RoomWrite("r", entries=log)])
    assert store.load()["r"].entries == log
    assert store.entries("r", 0, 10, 10) == log
    assert [e.index for e in store.annotations("r", 2, 2, 10)] == [4, 6]
    assert [e.index for e in store.annotations("r", 0, 9, 5)] == [4, 5]
    assert store.annotations("r", 3, 9, 10) == []


def test_a_version_3_database_gains_targets_and_its_rows_still_check(tmp_path: Path) -> None:
    """Rows written before targets existed keep their checksums (the target
    is in the CRC only when set)."""
    path = tmp_path / "v3.db"
    store = SqliteLogStore(path)
    store.write([RoomWrite("r", hard=HardState(1, "a"), entries=entries(1, 3))])
    store.close()
    with sqlite3.connect(path) as conn:
        conn.execute("DROP INDEX entries_by_target")
        for table in ("entries", "staged"):
            conn.execute(f"ALTER TABLE {table} DROP COLUMN target")
        conn.execute("PRAGMA user_version = 3")
    conn.close()
    store = SqliteLogStore(path)
    try:
        assert store.load()["r"].entries == entries(1, 3)
        edit = _about(4, EntryKind.EDIT, 2, "alice", "new")
        store.write([RoomWrite("r", entries=[edit])])
        assert store.load()["r"].entries == [*entries(1, 3), edit]
        assert store.annotations("r", 2, 2, 10) == [edit]
    finally:
        store.close()


def test_prune_never_deletes_what_the_archive_lacks(store: LogStore) -> None:
    """Retention with an archive: entries at or after `held` stay, however old."""
    log = entries(1, 10)  # seq = index - 1, all expired by age
    store.write([RoomWrite("r", hard=HardState(1, "a"), entries=log)])
    store.write([RoomWrite("r", snapshot=Snapshot(10, 1, state_after(log)))])
    assert store.prune("r", before_seq=9, before_ts_ms=10**15, held=4) == 4
    assert [e.seq for e in store.entries("r", 0, 10, 100)] == list(range(4, 10))
    assert store.prune("r", before_seq=9, before_ts_ms=10**15) == 6  # nothing held
