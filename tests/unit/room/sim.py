"""A deterministic simulated cluster for `RoomReplica`, and the invariants it checks.

Two layers, in the spirit of etcd-io/raft's interaction tests and
hashicorp/raft's `fuzzy/` suite:

* `Cluster` drives real `RoomReplica` objects exactly like a node does —
  tick, persist every step's `take_write()` to the node's `MemoryLogStore`
  *before* sending what the step produced, then `on_persisted` — over an
  in-memory network of `Msg`. Scripted tests use it by hand: messages wait in
  `inflight` until the test delivers, drops or reorders them; time moves only
  when the test says so.
* `Simulation` puts a seeded random scheduler on top: an event heap in
  abstract milliseconds, random latency (so reordering), drops, duplicates,
  symmetric and asymmetric partitions, crashes (losing what was not yet
  persisted), restarts from the store, pauses (SIGSTOP-like), failure
  detectors that lie, and clients publishing at whoever is administrator.

`Checker` watches every step and raises `InvariantViolation` at the first
broken rule: one administrator per epoch, one entry per (index, epoch),
committed prefixes that agree, commit indexes that never go back, no
truncation of a committed entry, each client message committed once, visible
seqs rising by exactly 1; `Checker.final` adds that every replica ends with
the same log and every acknowledged entry.

Nothing here sleeps or opens a socket: a run is a function of its seed.
"""

from __future__ import annotations

import heapq
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from parley._generated import peer_service_pb2 as peer_pb
from parley.coordination.move import superseded
from parley.room.codec import entry_from_pb
from parley.room.engine import Outbound, Ready, RoomEngine
from parley.room.entries import EntryKind, HardState, LogEntry
from parley.room.memory_store import MemoryLogStore
from parley.room.records import RoomWrite
from parley.room.replica import ReadAnswer, Role, RoomReplica, Timing
from parley.room.state import RoomState

APPEND = "append"
SNAPSHOT = "snapshot"
APPEND_RESULT = "append_result"
VOTE = "vote"
VOTE_RESULT = "vote_result"

OWNER = "owner"
"""The user who creates every room (and whose create entry is seq 0)."""


class InvariantViolation(AssertionError):
    """A safety rule of the replicated log was broken."""


@dataclass(eq=False)
class Msg:
    """One message on the simulated network (a request or its result)."""

    src: str
    dst: str
    kind: str
    room: str
    body: Any
    """The protobuf message: RoomAppend, RoomSnapshot, RoomAppendResult,
    RoomVote or RoomVoteResult."""
    request: Any = None
    """For a result: the request it answers (what the requester sent)."""
    rpc: int = 0
    """The RPC this message belongs to; a result carries its request's id."""
    incarnation: int = 0
    """The requester's incarnation when it sent the request."""
    deliver_at: int = 0
    history: list[LogEntry] = field(default_factory=list)
    """A snapshot's history, read from the sender's store as the node's
    transfer does, staged at the receiver before the snapshot goes in."""

    def __repr__(self) -> str:
        body = self.body
        detail = ""
        if self.kind == APPEND:
            idx = [e.index for e in body.entries]
            span = f"{idx[0]}..{idx[-1]}" if idx else "-"
            detail = (
                f"e{body.epoch} prev={body.prev_index}/{body.prev_epoch} [{span}] "
                f"c{body.commit_index}"
            )
        elif self.kind == APPEND_RESULT:
            detail = (
                f"e{body.epoch} ok={body.success} match={body.match_index} retry={body.retry_index}"
            )
        elif self.kind == SNAPSHOT:
            detail = f"e{body.epoch} at={body.index}/{body.index_epoch} have={body.have_index}"
        elif self.kind == VOTE:
            detail = f"e{body.epoch} last={body.last_index}/{body.last_epoch}"
        else:
            detail = f"e{body.epoch} granted={body.granted}"
        return f"{self.src}->{self.dst} {self.kind} {self.room} {detail}"


@dataclass(eq=False)
class SimNode:
    """One simulated node: its durable store and, while running, its engine."""

    id: str
    store: MemoryLogStore = field(default_factory=MemoryLogStore)
    disk: dict[str, dict[int, LogEntry]] = field(default_factory=dict)
    """A mirror of the store's entries by index (history below the
    snapshot too), to check what a write truncates."""
    disk_snap: dict[str, int] = field(default_factory=dict)
    """A mirror of the index of each room's stored snapshot."""
    staged: dict[str, dict[int, LogEntry]] = field(default_factory=dict)
    """A mirror of the history staged for each room's next install."""
    disk_hard: dict[str, HardState] = field(default_factory=dict)
    """A mirror of the store's hard states, to check what a message promises."""
    engine: RoomEngine | None = None
    """The production engine; None while crashed."""
    incarnation: int = 0
    crashed: bool = False
    paused: bool = False
    inbox: list[Callable[[], None]] = field(default_factory=list)
    """Work that arrived while paused, run in order on resume."""
    pending: dict[str, dict[int, tuple[int, str, str]]] = field(default_factory=dict)
    """Per room: index -> (epoch, user, client_msg_id) of proposals awaiting commit."""
    requests: dict[int, Msg] = field(default_factory=dict)
    """Requests handed to the engine (by token), until their answer leaves."""
    writing: Ready | None = None
    """The Ready whose writes are submitted to the store but not durable yet."""
    held: bool = False
    """Manual harness: writes stay submitted until `release_writes`."""

    @property
    def running(self) -> bool:
        """True when the process exists and is not paused."""
        return not self.crashed and not self.paused

    @property
    def replicas(self) -> dict[str, RoomReplica]:
        """The engine's replicas ({} while crashed)."""
        return self.engine.rooms if self.engine is not None else {}


class Checker:
    """Safety invariants, checked on every step of every node."""

    def __init__(self) -> None:
        """Start with nothing observed."""
        self.incarnations: dict[str, str] = {}
        """Per room, the incarnation first seen administered."""
        self.admins: dict[tuple[str, int], str] = {}
        """(room, epoch) -> the only node ever administrator in it."""
        self.entries: dict[tuple[str, str, int, int], LogEntry] = {}
        """(room, incarnation, index, epoch) -> the one entry ever written there."""
        self.committed: dict[str, list[LogEntry]] = {}
        """Per room, the longest committed prefix any replica has reported."""
        self.client_keys: dict[str, dict[tuple[str, str], int]] = {}
        """Per room, (user, client_msg_id) -> index of its committed entry."""
        self.last_seq: dict[str, int] = {}
        """Per room, the seq of the last committed visible entry."""
        self.commit_seen: dict[tuple[str, str], int] = {}
        """(node, room) -> commit index last seen on the current replica object."""
        self.taken: dict[tuple[str, str], int] = {}
        """(node, room) -> last index handed out by take_committed."""
        self.offsets: dict[tuple[str, str], int] = {}
        """(node, room) -> the replica's offset when its base was last checked."""
        self.acked: list[tuple[str, LogEntry]] = []
        """Every entry acknowledged to a client, with its room."""
        self.acked_index: dict[str, int] = {}
        """Per room, the highest index acknowledged to a client."""
        self.read_floor: dict[tuple[str, int], int] = {}
        """(node, read token) -> the acknowledged index the read must include."""
        self.elections = 0
        self.dedupe_window_ms = 10**12
        """A retry may be stored again only this long after the first (the
        engines' de-duplication window; "never" unless a test sets it)."""
        self.check_durable_sends = True
        """Check every message against the sender's disk (`before_send`)."""
        self.stats: Counter[str] = Counter()
        """How often interesting things happened, to see that a run did something."""

    def fail(self, what: str) -> None:
        """Raise an InvariantViolation."""
        raise InvariantViolation(what)

    def refounded(self, room: str) -> None:
        """A founder replaces its copy that never reached anyone: what it
        held was never anywhere else, and nothing of it committed."""
        if self.committed.get(room):
            self.fail(f"{room}: founded again after entries committed")

    def recreated(self, room: str) -> None:
        """The room was deleted and a new one of that name is being created:
        its history starts over (the old one's acknowledged entries went with
        the delete)."""
        self.committed.pop(room, None)
        self.last_seq.pop(room, None)
        self.client_keys.pop(room, None)
        self.incarnations.pop(room, None)
        self.admins = {k: v for k, v in self.admins.items() if k[0] != room}
        self.acked = [(r, e) for r, e in self.acked if r != room]
        self.acked_index.pop(room, None)

    def forget_replica(self, node: str, room: str) -> None:
        """A node dropped its copy of a room (it may get a new one later)."""
        self.commit_seen.pop((node, room), None)
        self.taken.pop((node, room), None)
        self.offsets.pop((node, room), None)

    def forget(self, node: str) -> None:
        """A node restarted: its replicas start over from commit index 0."""
        for key in [k for k in self.commit_seen if k[0] == node]:
            del self.commit_seen[key]
        for key in [k for k in self.taken if k[0] == node]:
            del self.taken[key]
        for key in [k for k in self.offsets if k[0] == node]:
            del self.offsets[key]

    def before_write(self, node: str, disk: dict[int, LogEntry], write: RoomWrite) -> None:
        """Check a write before it reaches the store."""
        room = write.room
        if write.snapshot is not None:
            self.stats["snapshots_installed" if write.install else "snapshots_stored"] += 1
        if write.truncate_from is not None:
            doomed = sorted(i for i in disk if i >= write.truncate_from)
            self.stats["truncated"] += len(doomed)
            committed = self.committed.get(room, [])
            for index in doomed:
                if write.install and write.snapshot and index <= write.snapshot.index:
                    continue  # the history staged with the snapshot replaces it
                if index <= len(committed) and disk[index] == committed[index - 1]:
                    self.fail(
                        f"{node}/{room}: truncates committed entry {index} "
                        f"{committed[index - 1]} (truncate_from={write.truncate_from})"
                    )

    def record(self, node: str, room: str, incarnation: str, entries: Any) -> None:
        """Entries became durable on a node, or left it in an append: from
        then on, no other entry may ever take the same (index, epoch).

        (An entry that was only submitted and died with its process, unsent,
        was never anywhere: a restarted node may write another in its place.)
        """
        for entry in entries:
            key = (room, incarnation, entry.index, entry.epoch)
            first = self.entries.setdefault(key, entry)
            if first != entry:
                self.fail(f"{node}/{room}: two entries at index/epoch {key[2:]}: {first} {entry}")

    def before_send(self, node: SimNode, msg: Msg) -> None:
        """Nothing leaves a node before what it promises is durable there.

        A message of epoch E needs E (or a later epoch) on disk (a pre-vote
        asks about an epoch nobody holds yet and changes nothing, so it needs
        nothing); a granted vote needs the vote on disk, and a successful
        append answer the entries it acknowledges, unless the node already
        holds a later epoch on disk.
        """
        if not self.check_durable_sends:
            return
        body = msg.body
        if msg.kind in (VOTE, VOTE_RESULT) and body.pre:
            return
        hard = node.disk_hard.get(msg.room, HardState())
        if body.epoch > hard.epoch:
            self.fail(f"{node.id}: sent {msg} of epoch {body.epoch} with {hard} on disk")
        if body.epoch < hard.epoch:
            # answered, then moved to a later epoch in the same batch: the
            # answer's promise is void, since this node will never act in that
            # epoch again (Raft's safety argument covers the stale answer)
            return
        if msg.kind == VOTE_RESULT and body.granted and hard.voted_for != msg.dst:
            self.fail(f"{node.id}: granted {msg} with {hard} on disk")
        if msg.kind == APPEND_RESULT and body.success:
            disk = node.disk.get(msg.room, {})
            held = max(max(disk, default=0), node.disk_snap.get(msg.room, 0))
            if held < body.match_index:
                self.fail(f"{node.id}: acknowledged {msg} holding {held} entries on disk")

    def observe(self, node: str, rep: RoomReplica, taken: list[LogEntry]) -> None:
        """Check a replica after a step (its write is durable by now)."""
        room = rep.room
        key = (node, room)
        if rep.role is Role.ADMINISTRATOR:
            # another incarnation of the room (two creates racing) is another
            # room that happens to have the same name: its epochs are its own
            main = self.incarnations.setdefault(room, rep.incarnation)
            name = room if rep.incarnation in ("", main) else f"{room}/{rep.incarnation}"
            if (name, rep.epoch) not in self.admins:
                self.stats["administrators"] += 1
            first = self.admins.setdefault((name, rep.epoch), node)
            if first != node:
                self.fail(f"{room}: two administrators in epoch {rep.epoch}: {first}, {node}")
        if rep.commit_index > rep.last_index:
            self.fail(f"{node}/{room}: commit index {rep.commit_index} > last {rep.last_index}")
        seen = self.commit_seen.get(key, 0)
        if rep.commit_index < seen:
            self.fail(f"{node}/{room}: commit index went back {seen} -> {rep.commit_index}")
        for index in range(seen + 1, rep.commit_index + 1):
            if index <= rep.offset:
                # came with a snapshot: only what the cluster committed
                if index > len(self.committed.get(room, [])):
                    self.fail(
                        f"{node}/{room}: a snapshot at {rep.offset} covers uncommitted {index}"
                    )
                continue
            self._commit(node, room, rep.entry(index))
        self.commit_seen[key] = rep.commit_index
        if self.offsets.get(key, 0) != rep.offset:
            self.offsets[key] = rep.offset
            self.check_base(node, rep)
        last = self.taken.get(key, 0)
        for entry in taken:
            # (a gap is what a snapshot stood in for)
            gap_ok = entry.index == last + 1 or entry.index - 1 <= rep.offset
            if not gap_ok or entry != self.committed[room][entry.index - 1]:
                self.fail(f"{node}/{room}: take_committed gave {entry} after {last}")
            last = entry.index
        self.taken[key] = last
        if self.taken[key] > rep.commit_index:
            self.fail(f"{node}/{room}: took past the commit index")

    def check_base(self, node: str, rep: RoomReplica) -> None:
        """A replica's state at its offset is what the committed log says
        (compaction folded the right entries; a snapshot carried it whole)."""
        if not rep.offset:
            return
        self.stats["offsets_checked"] += 1
        committed = self.committed.get(rep.room, [])
        if rep.offset > len(committed):
            self.fail(f"{node}/{rep.room}: offset {rep.offset} beyond the commit {len(committed)}")
        want = RoomState.from_entries(committed[: rep.offset], rep.base.window)
        if (
            want.to_json() != rep.base.to_json()
            or rep.offset_epoch != committed[rep.offset - 1].epoch
        ):
            self.fail(f"{node}/{rep.room}: the state at offset {rep.offset} differs from the log's")

    def _commit(self, node: str, room: str, entry: LogEntry) -> None:
        log = self.committed.setdefault(room, [])
        index = entry.index
        if index <= len(log):
            if log[index - 1] != entry:
                self.fail(
                    f"{node}/{room}: committed {entry} but {log[index - 1]} was committed "
                    f"at {index} before"
                )
            return
        if index != len(log) + 1:
            self.fail(f"{node}/{room}: commit of {index} skips {len(log) + 1}")
        last_seq = self.last_seq.get(room, -1)
        if entry.visible:
            if entry.seq != last_seq + 1:
                self.fail(f"{room}: committed seq {entry.seq} after {last_seq}: {entry}")
            if (entry.kind is EntryKind.CREATE) != (entry.seq == 0):
                self.fail(f"{room}: seq 0 must be the create entry: {entry}")
        elif entry.seq != max(last_seq, 0):
            self.fail(f"{room}: epoch entry seq {entry.seq} after visible {last_seq}")
        if entry.kind is EntryKind.MESSAGE:
            keys = self.client_keys.setdefault(room, {})
            client_key = (entry.user, entry.client_msg_id)
            if client_key in keys:
                earlier = log[keys[client_key] - 1]
                # only a retry older than the de-duplication window may be
                # stored again (the window is measured on the log's times)
                if entry.ts_ms - earlier.ts_ms <= self.dedupe_window_ms:
                    self.fail(
                        f"{room}: client message {client_key} committed twice: "
                        f"at {keys[client_key]} and {index}"
                    )
            keys[client_key] = index
        log.append(entry)
        if entry.visible:
            self.last_seq[room] = entry.seq

    def ack(self, room: str, entry: LogEntry) -> None:
        """A client was told its entry is stored."""
        log = self.committed.get(room, [])
        if entry.index > len(log) or log[entry.index - 1] != entry:
            self.fail(f"{room}: acknowledged {entry} which is not committed")
        self.acked.append((room, entry))
        self.acked_index[room] = max(self.acked_index.get(room, 0), entry.index)

    def read_issued(self, node: str, room: str, token: int) -> None:
        """A read arrives at a node: it must see every entry acknowledged so far."""
        self.read_floor[(node, token)] = self.acked_index.get(room, 0)

    def read_answered(self, node: str, room: str, answer: ReadAnswer) -> None:
        """Linearizable reads: a read served at index i must not miss an entry
        acknowledged before it was asked."""
        floor = self.read_floor.pop((node, answer.token), 0)
        if answer.index is None:
            self.stats["reads_refused"] += 1
            return
        self.stats["reads_served"] += 1
        if answer.index < floor:
            self.fail(
                f"{node}/{room}: read {answer.token} served at index {answer.index}, "
                f"missing acknowledged entries up to {floor}"
            )

    def final(self, cluster: Cluster) -> None:
        """Check the end state: every node up, healed and quiet.

        Every replica of a room holds the same committed log (the global
        committed prefix), logs agree wherever index and epoch agree, the
        store matches memory, and every acknowledged entry survived.
        """
        for room in cluster.rooms:
            members = cluster.group(room)
            for node_id, node in cluster.nodes.items():
                if node_id not in members and room in node.replicas:
                    self.fail(f"{node_id}/{room}: holds a copy outside the group {members}")
                stored = node.store.load().get(room)
                if node_id not in members and stored is not None and stored.entries:
                    self.fail(f"{node_id}/{room}: stored copy outside the group {members}")
            reps = [(n, cluster.nodes[n].replicas[room]) for n in members]
            committed = self.committed.get(room, [])
            commits = {n: r.commit_index for n, r in reps}
            if len(set(commits.values())) != 1 or commits[members[0]] != len(committed):
                self.fail(f"{room}: commit indexes differ at the end: {commits}, {len(committed)}")
            for node, rep in reps:
                if rep.log[: rep.commit_index - rep.offset] != committed[rep.offset :]:
                    self.fail(f"{node}/{room}: committed log differs from the cluster's")
                self.check_base(node, rep)
                store = cluster.nodes[node].store
                stored = store.load().get(room)
                after = [e for e in stored.entries if e.index > rep.offset] if stored else []
                if stored is None or after != rep.log:
                    self.fail(f"{node}/{room}: store and memory disagree")
                snap = stored.snapshot.index if stored.snapshot else 0
                if (
                    snap > rep.offset
                    or (stored.entries[-1].index if stored.entries else snap) != rep.last_index
                ):
                    self.fail(f"{node}/{room}: the store ends elsewhere than memory")
                if (stored.hard.epoch, stored.hard.voted_for) != (rep.epoch, rep.voted_for):
                    self.fail(f"{node}/{room}: stored hard state {stored.hard} vs {rep.epoch}")
                # the whole committed history is on disk, however the copy was made
                if store.entries(room, 0, len(committed), len(committed) + 1) != committed:
                    self.fail(f"{node}/{room}: the stored history differs from the committed log")
            for i, (a, ra) in enumerate(reps):
                for b, rb in reps[i + 1 :]:
                    check_log_matching(f"{room} {a}/{b}", ra, rb)
        for room, entry in self.acked:
            for node in cluster.group(room):
                rep = cluster.nodes[node].replicas[room]
                if entry.index > rep.commit_index:
                    self.fail(f"{node}/{room}: acknowledged {entry} lost")
                stored = cluster.nodes[node].store.entries(room, entry.index - 1, entry.index, 1)
                if stored != [entry]:
                    self.fail(f"{node}/{room}: acknowledged {entry} lost from the store")


def check_log_matching(what: str, a: RoomReplica, b: RoomReplica, known: int = 0) -> None:
    """Raft's log matching: same index and epoch means the same prefix
    (compared where both hold the entries in memory).

    Args:
        what: names the pair in a failure.
        a: one replica.
        b: the other.
        known: a prefix length already known to be equal (it is not compared).
    """
    low = max(a.offset, b.offset, known)
    for index in range(min(a.last_index, b.last_index), low, -1):
        if a.entry(index).epoch == b.entry(index).epoch:
            span_a = a.log[low - a.offset : index - a.offset]
            if span_a != b.log[low - b.offset : index - b.offset]:
                raise InvariantViolation(f"{what}: logs match at {index} but differ before it")
            return


def whole_log(c: Cluster, node: str, room: str = "r0") -> list[LogEntry]:
    """A replica's whole log: what it folded, from its store, then memory."""
    rep = c.replica(node, room)
    return [*c.nodes[node].store.entries(room, 0, rep.offset, 10**9), *rep.log]


def room_replicas(nodes: list[str], rooms: int, replication: int) -> dict[str, list[str]]:
    """Rooms r0, r1, ... each on `replication` nodes, in a rotating placement order."""
    result = {}
    for i in range(rooms):
        order = nodes[i % len(nodes) :] + nodes[: i % len(nodes)]
        result[f"r{i}"] = order[:replication]
    return result


class Cluster:
    """Nodes running the production `RoomEngine` over an in-memory network.

    Each node runs the engine's loop exactly as `parley.node.engine_loop`
    does: inputs, then `ready()`; eager appends leave; the writes go to the
    node's `MemoryLogStore` and become durable (at once here, after a random
    delay in `Simulation`, or when the test says so with `hold_writes`);
    `advance`; the other messages leave; committed entries are applied.
    `crash_point` may kill the node between any two of those steps (and
    between two messages), losing whatever was not durable.

    By itself it is the manual harness of the scripted tests: sent messages
    wait in `inflight` until the test delivers, drops or reorders them; time
    moves only with `advance`. `Simulation` replaces `schedule`, `up_view`,
    `crash_point` and `write_delay` to run it at random.

    Args:
        nodes: node ids.
        rooms: room -> its replicas in placement order.
        timing: protocol timers for every replica.
        seed: seeds the replicas' election jitter.
    """

    def __init__(
        self,
        nodes: list[str],
        rooms: dict[str, list[str]],
        timing: Timing | None = None,
        seed: int = 0,
        window: int | None = None,
    ) -> None:
        self.timing = timing or Timing()
        self.rooms = rooms
        self.now = 0
        self.rng = random.Random(seed)
        self.checker = Checker()
        self.nodes = {n: SimNode(n) for n in nodes}
        self.inflight: list[Msg] = []
        self.lost_msgs: list[Msg] = []
        self.blocked: set[tuple[str, str]] = set()
        """Directed links (src, dst) that lose every message."""
        self.down: dict[str, set[str]] = {}
        """Manual failure-detector overrides: node -> peers it believes down."""
        self.on_ack: Callable[[str, LogEntry], None] | None = None
        self.on_read: Callable[[str, str, ReadAnswer], None] | None = None
        """Called with (node, room, answer) for every read the engine answers."""
        self.crash_point: Callable[[SimNode, str], bool] = lambda node, where: False
        """Asked at every step of the loop ("step", "submitted", "durable",
        "sending"); True kills the node there."""
        self.write_delay: Callable[[], int] | None = None
        """Simulation: how long a write takes (None: durable at once)."""
        self.later: Callable[[int, Callable[[], None]], None] = lambda _ms, fn: fn()
        """Simulation: run fn after a delay (the manual harness has no clock)."""
        self.unsafe_send_before_persist = False
        """Test-only: the engines send everything before it is durable."""
        self.recorded = {room: list(members) for room, members in rooms.items()}
        """The replica group each room's create entry records (the order may
        differ from placement's: replicas then follow the recorded one)."""
        self.window = window
        """Most append RPCs in flight per (room, peer); None: no limit (the
        manual harness, where lost messages never time out). The real node
        sends one at a time; more pipelines, as append_for allows."""
        self._token = 0
        self.reads = 0
        self.foundings = 0
        for node in self.nodes.values():
            self._start(node, first=True)

    # ------------------------------------------------------------ lifecycle

    def group(self, room: str) -> list[str]:
        """The room's group now: what its serving administrator's log says
        (the initial placement before anyone serves)."""
        for node in self.nodes.values():
            rep = node.replicas.get(room)
            if node.running and rep is not None and rep.serving:
                return list(rep.replicas)
        return list(self.rooms[room])

    def holders(self, room: str) -> list[str]:
        """Nodes (running or paused) that hold a replica of the room."""
        return [n for n, node in sorted(self.nodes.items()) if room in node.replicas]

    def _start(self, node: SimNode, first: bool = False) -> None:
        records = node.store.load()
        engine = RoomEngine(
            node.id,
            self.timing,
            random.Random(self.rng.getrandbits(64)),
            window=self.window if self.window is not None else 10**9,
        )
        engine.unsafe_send_before_persist = self.unsafe_send_before_persist
        for room, members in self.rooms.items():
            record = records.get(room)
            # the initial group starts with empty copies (what a create
            # finds); later, as on a real node, only what the store holds
            if record is not None:
                engine.restore(room, members, record, self.now)
            elif first and node.id in members:
                engine.add(room, members, None, self.now)
        node.engine = engine
        node.pending = {room: {} for room in engine.rooms}
        node.requests = {}
        node.inbox = []
        node.writing = None

    def crash(self, node_id: str) -> None:
        """Kill a node: everything not in its store is gone."""
        node = self.nodes[node_id]
        if node.crashed:
            return
        self.checker.stats["crashes"] += 1
        if node.writing is not None:
            self.checker.stats["crashed_writing"] += 1
        node.crashed = True
        node.paused = False
        node.incarnation += 1
        node.engine = None
        node.inbox = []
        node.requests = {}
        node.pending = {}
        node.writing = None
        self.checker.forget(node_id)

    def restart(self, node_id: str) -> None:
        """Start a crashed node again from its store."""
        node = self.nodes[node_id]
        if not node.crashed:
            return
        node.crashed = False
        self._start(node)

    def pause(self, node_id: str) -> None:
        """Stop a node like SIGSTOP: it processes nothing until resumed."""
        node = self.nodes[node_id]
        if not node.crashed:
            self.checker.stats["pauses"] += 1
            node.paused = True

    def resume(self, node_id: str) -> None:
        """Let a paused node go on, first with everything that arrived meanwhile."""
        node = self.nodes[node_id]
        if not node.paused:
            return
        node.paused = False
        while node.inbox and node.running:
            node.inbox.pop(0)()

    def replica(self, node_id: str, room: str = "r0") -> RoomReplica:
        """The replica of a room on a node (which must be running or paused)."""
        return self.nodes[node_id].replicas[room]

    def engine(self, node_id: str) -> RoomEngine:
        """A running (or paused) node's engine."""
        engine = self.nodes[node_id].engine
        assert engine is not None, f"{node_id} is down"
        return engine

    def administrators(self, room: str = "r0") -> list[str]:
        """Running nodes that currently believe they are the room's administrator."""
        return [
            n
            for n in self.holders(room)
            if self.nodes[n].running and self.nodes[n].replicas[room].role is Role.ADMINISTRATOR
        ]

    # ------------------------------------------------------ the ready loop

    def _run(self, node: SimNode, fn: Callable[[], None]) -> None:
        """Run work on a node now, or later if it is paused; drop it if crashed."""
        if node.crashed:
            return
        if node.paused:
            node.inbox.append(fn)
            return
        fn()

    def _input(self, node: SimNode, fn: Callable[[RoomEngine], None]) -> None:
        """Feed the node's engine one input, then run its loop."""

        def work() -> None:
            assert node.engine is not None
            fn(node.engine)
            self._pump(node)

        self._run(node, work)

    def _pump(self, node: SimNode) -> None:
        """The node's Ready loop, as far as it can go now."""
        while node.engine is not None and node.writing is None and node.engine.has_ready():
            if self.crash_point(node, "step"):
                self.crash(node.id)  # the inputs' state changes never reached the disk
                return
            engine = node.engine
            ready = engine.ready(self.now)
            self._send_all(node, ready.eager)
            if node.crashed:
                return
            if not ready.writes:
                self._finish(node, ready)
                continue
            for write in ready.writes:
                self.checker.before_write(node.id, node.disk.setdefault(write.room, {}), write)
            node.writing = ready
            incarnation = node.incarnation
            if self.crash_point(node, "submitted"):
                self.crash(node.id)  # submitted, never durable
                return
            if node.held:
                return
            delay = self.write_delay() if self.write_delay is not None else 0
            if delay:
                self.later(delay, lambda inc=incarnation: self._durable(node, inc))
                return
            self._durable(node, incarnation)
            return  # _durable pumps on

    def _durable(self, node: SimNode, incarnation: int) -> None:
        """The store finished the submitted write."""
        if node.incarnation != incarnation or node.writing is None:
            return  # the process died meanwhile: the write died with it

        def work() -> None:
            if node.incarnation != incarnation or node.writing is None:
                return
            ready = node.writing
            node.store.write(ready.writes)
            for write in ready.writes:
                held = node.replicas.get(write.room)
                room_incarnation = held.incarnation if held is not None else ""
                self.checker.record(node.id, write.room, room_incarnation, write.entries)
                if write.drop:
                    node.disk.pop(write.room, None)
                    node.disk_hard.pop(write.room, None)
                    node.disk_snap.pop(write.room, None)
                    if not write.install:
                        node.staged.pop(write.room, None)
                disk = node.disk.setdefault(write.room, {})
                if write.truncate_from is not None:
                    for index in [i for i in disk if i >= write.truncate_from]:
                        del disk[index]
                if write.snapshot is not None:
                    node.disk_snap[write.room] = write.snapshot.index
                    if write.install:
                        staged = node.staged.get(write.room, {})
                        for index in [i for i in staged if i <= write.snapshot.index]:
                            disk[index] = staged.pop(index)
                disk.update((e.index, e) for e in write.entries)
                if write.hard is not None:
                    node.disk_hard[write.room] = write.hard
            node.writing = None
            if self.crash_point(node, "durable"):
                self.crash(node.id)  # durable, nothing sent
                return
            self._finish(node, ready)
            self._pump(node)

        self._run(node, work)

    def _finish(self, node: SimNode, ready: Ready) -> None:
        """After the writes: advance, send, apply."""
        engine = node.engine
        assert engine is not None
        engine.advance(ready)
        self._send_all(node, ready.messages)
        if node.crashed:
            return
        for room in ready.dropped:
            self.checker.stats["dropped"] += 1
            self.checker.forget_replica(node.id, room)  # (the disk mirror: in _durable)
        for outcome in ready.moves:
            self.checker.stats[f"move_{outcome.outcome}"] += 1
        committed = dict(ready.committed)
        for room, rep in engine.rooms.items():
            self.checker.observe(node.id, rep, committed.get(room, []))
        for room, taken in ready.committed:
            self._deliver_commits(node, room, taken)
        for room, answer in ready.reads:
            self.reads += 1
            self.checker.read_answered(node.id, room, answer)
            if self.on_read is not None:
                self.on_read(node.id, room, answer)

    def _send_all(self, node: SimNode, messages: list[Outbound]) -> None:
        for out in messages:
            if self.crash_point(node, "sending"):
                self.crash(node.id)  # part of the messages left
                return
            msg = self._to_msg(node, out)
            self.checker.before_send(node, msg)
            if msg.kind == APPEND:
                entries = [entry_from_pb(e) for e in msg.body.entries]
                self.checker.record(node.id, msg.room, msg.body.incarnation, entries)
            elif msg.kind == SNAPSHOT:
                self.checker.record(node.id, msg.room, msg.body.incarnation, msg.history)
            self.send(msg)

    def _to_msg(self, node: SimNode, out: Outbound) -> Msg:
        body = out.body
        if out.reply_to:
            request = node.requests.pop(out.reply_to)
            kind = VOTE_RESULT if request.kind == VOTE else APPEND_RESULT
            return Msg(node.id, out.to, kind, out.room, body, request.body, request.rpc,
                       request.incarnation)  # fmt: skip
        if isinstance(body, peer_pb.RoomSnapshot):
            # the node's transfer: the history the peer lacks, from this store
            history = node.store.entries(out.room, body.have_index, body.index, 10**9)
            self.checker.stats["snapshots_sent"] += 1
            self.checker.stats["history_copied"] += len(history)
            return Msg(node.id, out.to, SNAPSHOT, out.room, body, None, out.id, node.incarnation,
                       history=history)  # fmt: skip
        kind = APPEND if isinstance(body, peer_pb.RoomAppend) else VOTE
        return Msg(node.id, out.to, kind, out.room, body, None, out.id, node.incarnation)

    def _deliver_commits(self, node: SimNode, room: str, taken: list[LogEntry]) -> None:
        pending = node.pending.setdefault(room, {})
        for entry in taken:
            waiting = pending.pop(entry.index, None)
            if waiting is None:
                continue
            epoch, user, client_msg_id = waiting
            if (entry.epoch, entry.user, entry.client_msg_id) == (epoch, user, client_msg_id):
                self.checker.ack(room, entry)
                if self.on_ack is not None:
                    self.on_ack(room, entry)

    def send_before_persist(self) -> None:
        """Test-only: make every engine send before persisting (a planted bug)."""
        self.unsafe_send_before_persist = True
        for node in self.nodes.values():
            if node.engine is not None:
                node.engine.unsafe_send_before_persist = True

    def hold_writes(self, node_id: str) -> None:
        """Manual harness: the node's next writes stay submitted, not durable."""
        self.nodes[node_id].held = True

    def release_writes(self, node_id: str) -> None:
        """Manual harness: the held write becomes durable; the loop goes on."""
        node = self.nodes[node_id]
        node.held = False
        if node.writing is not None:
            self._durable(node, node.incarnation)
        else:
            self._run(node, lambda: self._pump(node))

    def reconcile(self, room: str) -> None:
        """What each node's mover does with LocateRoom: a copy the room's
        serving administrator does not count on is dropped."""
        admin = next(
            (n for n in self.administrators(room) if self.nodes[n].replicas[room].serving), None
        )
        if admin is None:
            return
        target = self.nodes[admin].replicas[room]
        for node_id in self.holders(room):
            node = self.nodes[node_id]
            rep = node.replicas[room]
            if not node.running or node.engine is None:
                continue
            if superseded(
                node_id,
                rep.incarnation,
                serving=True,
                committed=target.commit_index >= target.tip.config_index,
                their_incarnation=target.incarnation,
                replicas=target.replicas,
                joining=target.tip.joining,
                learners=target.learners,
            ):
                self.checker.stats["reconciled"] += 1
                self._input(node, lambda e, r=room: e.drop(r))

    # --------------------------------------------------------------- inputs

    def up_view(self, node_id: str) -> set[str]:
        """What a node's failure detector says is up (self included).

        Manual harness: every running (or paused) node it is connected to both
        ways, minus the test's overrides in `down`.
        """
        up = {node_id}
        for other, peer in self.nodes.items():
            if other == node_id or peer.crashed:
                continue
            if (node_id, other) in self.blocked or (other, node_id) in self.blocked:
                continue
            if other in self.down.get(node_id, set()):
                continue
            up.add(other)
        return up

    def tick(self, node_id: str, up: set[str] | None = None) -> None:
        """One tick of a node: timers, heartbeats, and elections that begin."""
        node = self.nodes[node_id]

        def tick(engine: RoomEngine) -> None:
            view = self.up_view(node_id) if up is None else up
            self.checker.elections += len(engine.tick(self.now, view))

        self._input(node, tick)

    def campaign(self, node_id: str, room: str = "r0") -> None:
        """Make a node start a real election now (as a won pre-vote would)."""
        self.checker.elections += 1
        self._input(self.nodes[node_id], lambda engine: engine.campaign(room, self.now))

    def move(self, node_id: str, room: str, target: list[str]) -> None:
        """Ask a node (the room's administrator) to move the room to target."""
        self._input(self.nodes[node_id], lambda engine: engine.move(room, target, self.now))

    def heartbeat(self, node_id: str, room: str = "r0") -> None:
        """Make an administrator send an append to every peer now."""
        self._input(self.nodes[node_id], lambda engine: engine.heartbeat(room))

    def drain(self, node_id: str) -> None:
        """A node is told to shut down (SIGTERM): it hands its rooms over."""
        up = self.up_view(node_id)
        self._input(self.nodes[node_id], lambda engine: engine.drain(self.now, up))

    def read(self, node_id: str, room: str = "r0") -> int:
        """Ask a node to serve a read; the answer reaches `on_read`. Returns its token."""
        self._token += 1
        token = self._token
        self.checker.read_issued(node_id, room, token)
        self._input(self.nodes[node_id], lambda engine: engine.read(room, token))
        return token

    def publish(
        self, node_id: str, room: str, user: str, client_msg_id: str, text: str = ""
    ) -> LogEntry | None:
        """A client request at a node, handled as the real node would.

        A create (client_msg_id "create", recording the room's replica group
        as its text, as the node does) or a message. The
        node de-duplicates against `tip`: a retry of a request already in the
        log waits for that entry instead of appending another.

        Returns:
            The entry the client now waits for, or None when refused (not
            the administrator, paused, crashed, or no room yet).
        """
        node = self.nodes[node_id]
        rep = node.replicas.get(room)
        kind = EntryKind.CREATE if client_msg_id == "create" else EntryKind.MESSAGE
        if kind is EntryKind.CREATE and node.running and (rep is None or rep.last_index == 0):
            return self.found(node_id, room)
        if not node.running or rep is None or not rep.serving:
            return None
        if kind is EntryKind.CREATE:
            text = ",".join(self.recorded[room])  # the create entry records the replica group
        existing: LogEntry | None = None
        # what the node does: memory first, then the store (compacted entries)
        held = [*node.store.entries(room, 0, rep.offset, 10**9), *rep.log]
        if kind is EntryKind.CREATE:
            if rep.tip.exists:
                existing = next(e for e in held if e.kind is EntryKind.CREATE)
        else:
            if not rep.tip.exists:
                return None
            seq = rep.tip.original(user, client_msg_id)
            if seq is not None:
                existing = next(e for e in reversed(held) if e.visible and e.seq == seq)
        if existing is not None and existing.index <= rep.commit_index:
            # a retry of a committed request: answered at once, as the node
            # would, from the commit index in memory (ahead of what a Ready
            # has applied while a write is in flight)
            self.checker.observe(node_id, rep, [])
            self.checker.ack(room, existing)
            if self.on_ack is not None:
                self.on_ack(room, existing)
            return existing
        if existing is not None:
            entry = existing
        else:
            assert node.engine is not None
            entry = node.engine.propose(room, kind, user, text, client_msg_id, self.now)
        node.pending.setdefault(room, {})[entry.index] = (
            entry.epoch,
            entry.user,
            entry.client_msg_id,
        )
        if existing is None:
            self._pump(node)
        return entry

    def found(self, node_id: str, room: str = "r0") -> LogEntry | None:
        """A create at a node that holds nothing of the room: it founds it
        (first administrator, create entry naming the recorded group), as
        the node's CreateRoom does. The incarnation is "create", the id the
        clients wait for."""
        node = self.nodes[node_id]
        if not node.running:
            return None
        assert node.engine is not None
        rep = node.replicas.get(room)
        if rep is not None and rep.last_index:
            self.checker.refounded(room)
        if any(e.kind is EntryKind.DELETE for e in self.checker.committed.get(room, [])):
            self.checker.recreated(room)
        self.foundings += 1
        incarnation = f"create{self.foundings}"
        entry = node.engine.found(room, self.recorded[room], OWNER, incarnation, self.now)
        node.pending.setdefault(room, {})[entry.index] = (entry.epoch, entry.user, incarnation)
        self._pump(node)
        return entry

    # -------------------------------------------------------------- network

    def send(self, msg: Msg) -> None:
        """Put a message on the network (the simulation overrides `schedule`)."""
        self.schedule(msg)

    def schedule(self, msg: Msg) -> None:
        """Manual harness: the message waits in `inflight` for the test."""
        self.inflight.append(msg)

    def deliver(self, msg: Msg) -> None:
        """Hand a message to its destination (lost if the link is cut or it is down)."""
        if msg in self.inflight:
            self.inflight.remove(msg)
        dst = self.nodes[msg.dst]
        if (msg.src, msg.dst) in self.blocked or dst.crashed:
            self.lost(msg)
            return
        self._input(dst, lambda engine: self._process(dst, engine, msg))

    def _process(self, node: SimNode, engine: RoomEngine, msg: Msg) -> None:
        if msg.kind in (APPEND, SNAPSHOT, VOTE):
            self._token += 1
            node.requests[self._token] = msg
            if msg.kind == SNAPSHOT:
                # staged durably first (StageHistory), then installed
                node.store.stage(msg.room, msg.history)
                node.staged.setdefault(msg.room, {}).update((e.index, e) for e in msg.history)
                engine.step_snapshot(msg.src, msg.body, self._token, self.now)
            elif msg.kind == APPEND:
                engine.step_append(msg.src, msg.body, self._token, self.now)
            else:
                engine.step_vote(msg.src, msg.body, self._token, self.now)
            return
        if node.incarnation != msg.incarnation:
            return  # the answer to a process that died: its RPC is gone
        if msg.kind == APPEND_RESULT:
            self.checker.stats["append_ok" if msg.body.success else "append_rejected"] += 1
            engine.step_append_result(msg.src, msg.rpc, msg.body, self.now)
        else:
            engine.step_vote_result(msg.src, msg.body, self.now)

    def lost(self, msg: Msg) -> None:
        """A message was lost. Manual harness: kept in `lost_msgs`; a test that
        wants the administrator to hear of it calls `fail_append`."""
        self.lost_msgs.append(msg)

    def fail_append(self, msg: Msg) -> None:
        """Report an append RPC (its request or its result) as failed to its sender."""
        requester = msg.src if msg.kind in (APPEND, SNAPSHOT) else msg.dst
        self.rpc_failed(requester, msg.incarnation, msg.rpc)

    def rpc_failed(self, node_id: str, incarnation: int, rpc: int) -> None:
        """An append RPC got no answer: tell the administrator (if still that process)."""
        node = self.nodes[node_id]
        if node.incarnation == incarnation:
            self._input(node, lambda engine: engine.step_append_failed(rpc))

    def drop(self, pred: Callable[[Msg], bool] | None = None) -> list[Msg]:
        """Lose in-flight messages matching pred (all when None)."""
        victims = [m for m in self.inflight if pred is None or pred(m)]
        for msg in victims:
            self.inflight.remove(msg)
            self.lost(msg)
        return victims

    def deliver_where(self, pred: Callable[[Msg], bool]) -> int:
        """Deliver the in-flight messages matching pred, oldest first (not new ones)."""
        batch = [m for m in self.inflight if pred(m)]
        for msg in batch:
            self.deliver(msg)
        return len(batch)

    def stabilize(self, max_rounds: int = 1000) -> None:
        """Deliver messages (and what they cause) until the network is empty."""
        for _ in range(max_rounds):
            if not self.inflight:
                return
            self.deliver(self.inflight[0])
        raise AssertionError("network did not go quiet")

    def isolate(self, node_id: str) -> None:
        """Cut a node off from every other node, both ways."""
        for other in self.nodes:
            if other != node_id:
                self.blocked |= {(node_id, other), (other, node_id)}

    def heal(self) -> None:
        """Remove every cut link."""
        self.blocked.clear()

    def advance(self, ms: int) -> None:
        """Move the clock (nothing runs by itself in the manual harness)."""
        self.now += ms


# ------------------------------------------------------- scripted helpers


def one_room(nodes: str = "abc", timing: Timing | None = None) -> Cluster:
    """A manual cluster of one-letter nodes holding room r0, in that placement order."""
    names = list(nodes)
    return Cluster(names, {"r0": names}, timing)


def settle(c: Cluster, admin: str, room: str = "r0") -> None:
    """Two heartbeat rounds: followers catch up and learn the commit index."""
    for _ in range(2):
        c.heartbeat(admin, room)
        c.stabilize()


def start(c: Cluster, admin: str, room: str = "r0") -> None:
    """Create the room at admin (its first administrator), committed everywhere."""
    assert c.found(admin, room) is not None
    c.stabilize()
    assert c.replica(admin, room).serving
    settle(c, admin, room)


def run_for(c: Cluster, ms: int, tick_ms: int = 50) -> None:
    """Tick every running node every tick_ms for ms, delivering all messages."""
    for _ in range(ms // tick_ms):
        c.advance(tick_ms)
        for node in sorted(c.nodes):
            if c.nodes[node].running:
                c.tick(node)
        c.stabilize()


# ------------------------------------------------------------------ random


@dataclass
class SimConfig:
    """The shape of one randomized run; `for_seed` picks faults from the seed."""

    nodes: int = 3
    rooms: int = 1
    replication: int = 3
    steps: int = 2000
    tick_ms: int = 50
    latency_ms: tuple[int, int] = (1, 30)
    drop: float = 0.05
    duplicate: float = 0.02
    crash_mid_step: float = 0.0005
    """Chance of a crash at each point of a node's Ready loop."""
    write_ms: tuple[int, int] = (0, 0)
    """How long a store write takes to become durable."""
    fault_every_ms: tuple[int, int] = (200, 2500)
    rpc_timeout_ms: int = 600
    window: int = 1
    reversed_group: bool = False
    """The create entry records the replica group in reverse placement order."""
    """Append RPCs in flight per room and peer (the node sends one at a time)."""
    detect_ms: int = 300
    """How long a failure detector takes to see a node go down."""
    clients: int = 3
    publish_every_ms: tuple[int, int] = (20, 300)
    retry_ms: int = 400
    liveness_ms: int = 20_000
    """After healing: the bound for a serving administrator and a new commit."""
    timing: Timing = field(default_factory=Timing)
    send_before_persist: bool = False
    """Test-only planted bug: engines send everything before it is durable."""
    moves: int = 0
    """How many of the fault draws (out of about 13) move a room to a random
    group of `replication` nodes (needs nodes > replication to go anywhere)."""

    @classmethod
    def for_seed(cls, seed: int, nodes: int, steps: int, **overrides: Any) -> SimConfig:
        """A config whose network quality and fault rate vary with the seed."""
        rng = random.Random(f"config-{seed}")
        config = cls(
            nodes=nodes,
            replication=nodes,
            steps=steps,
            latency_ms=(rng.choice([0, 1, 5]), rng.choice([10, 40, 150])),
            drop=rng.choice([0.0, 0.02, 0.1, 0.25]),
            duplicate=rng.choice([0.0, 0.03, 0.1]),
            crash_mid_step=rng.choice([0.0, 0.0005, 0.002, 0.01]),
            write_ms=rng.choice([(0, 0), (1, 3), (1, 20)]),
            fault_every_ms=rng.choice([(100, 800), (300, 2500), (1000, 5000)]),
            clients=rng.choice([1, 3, 5]),
            # small batches open the windows where only part of a new
            # administrator's backlog has reached a majority (Figure 8)
            timing=Timing(max_batch_entries=rng.choice([1, 2, 3, 1024, 1024])),
            # pipelining reorders a follower's appends among themselves
            window=rng.choice([1, 1, 2, 4]),
            reversed_group=rng.random() < 0.25,
        )
        # (drawn last, so the draws above stay what they were for each seed)
        # tiny tails compact the log every few entries: followers that fall
        # behind, restarted nodes and new group members need snapshots
        tail = rng.choice([1000, 1, 2, 4])
        config.timing = replace(
            config.timing, log_tail=tail, snapshot_every=rng.choice([1, 3, 10_000])
        )
        # a few remembered ids already make snapshots rare (as 10,000 do in
        # a busy room)
        config.timing = replace(config.timing, cheap_snapshot_ids=rng.choice([10_000, 10_000, 5]))
        for key, value in overrides.items():
            setattr(config, key, value)
        return config


@dataclass
class Client:
    """A user publishing messages, retrying each until acknowledged."""

    user: str
    count: int = 0
    current: str | None = None
    """The client_msg_id being sent, until acknowledged."""
    next_try: int = 0
    acked: list[LogEntry] = field(default_factory=list)


class Simulation:
    """A seeded random run of a Cluster with faults, then healing and checks.

    Args:
        seed: decides everything: schedule, faults, latencies, jitter.
        config: the shape of the run.
    """

    def __init__(self, seed: int, config: SimConfig | None = None) -> None:
        self.seed = seed
        self.config = config or SimConfig()
        self.rng = random.Random(seed)
        names = [f"n{i}" for i in range(self.config.nodes)]
        rooms = room_replicas(names, self.config.rooms, self.config.replication)
        self.cluster = Cluster(names, rooms, self.config.timing, seed, self.config.window)
        self.cluster.schedule = self._schedule  # type: ignore[method-assign]
        self.cluster.lost = self._lost  # type: ignore[method-assign]
        self.cluster.up_view = self._up_view  # type: ignore[method-assign]
        self.cluster.crash_point = self._crash_point
        if self.config.write_ms[1]:
            self.cluster.write_delay = lambda: self.rng.randint(*self.config.write_ms)
        self.cluster.later = self.after
        if self.config.send_before_persist:
            self.cluster.send_before_persist()
        if self.config.reversed_group:
            self.cluster.recorded = {r: m[::-1] for r, m in rooms.items()}
        self.cluster.on_ack = self._on_ack
        self.events: list[tuple[int, int, Callable[[], None]]] = []
        self._seq = 0
        self.steps = 0
        self.chaos = True
        """Faults, loss and duplicates are being injected."""
        self.publishing = True
        """Clients start new messages (otherwise they only finish the current one)."""
        self.faults: list[tuple[str, Any]] = []
        """Active faults: ("partition", links), ("lie", (node, peer))."""
        self.lies: set[tuple[str, str]] = set()
        self._unreachable_since: dict[tuple[str, str], int] = {}
        self.clients = {
            room: [Client(f"u{i}") for i in range(self.config.clients)] for room in rooms
        }
        self.recovery_ms = 0
        """After healing: how long until every room had a serving administrator."""
        self.quiet_ms = 0
        """After healing: how long until everything was acknowledged and replicated."""
        self.log: list[str] = []
        """Faults injected, for a failure report."""
        for i, node in enumerate(names):
            self.at(i * self.config.tick_ms // len(names), lambda n=node: self._tick(n))
        for room in rooms:
            for client in self.clients[room]:
                self.at(self.rng.randrange(1, 200), lambda r=room, c=client: self._client(r, c))
        self.at(self.rng.randrange(*self.config.fault_every_ms), self._fault)

    # ----------------------------------------------------------- scheduling

    def at(self, when: int, fn: Callable[[], None]) -> None:
        """Run fn at simulated time `when`."""
        self._seq += 1
        heapq.heappush(self.events, (when, self._seq, fn))

    def after(self, delay: int, fn: Callable[[], None]) -> None:
        """Run fn `delay` ms from now."""
        self.at(self.cluster.now + delay, fn)

    def step(self) -> None:
        """Run the next event."""
        when, _, fn = heapq.heappop(self.events)
        self.cluster.now = max(self.cluster.now, when)
        self.steps += 1
        fn()
        if self.steps % 250 == 0:
            self.check_logs_match()

    def check_logs_match(self) -> None:
        """Log matching across every pair of live replicas, mid-run."""
        for room in self.cluster.rooms:
            reps = [
                (n, self.cluster.nodes[n].replicas[room])
                for n in self.cluster.holders(room)
                if not self.cluster.nodes[n].crashed
            ]
            for i, (a, rep_a) in enumerate(reps):
                for b, rep_b in reps[i + 1 :]:
                    if rep_a.incarnation != rep_b.incarnation:
                        continue  # a dead founding's copy, to be dropped
                    # committed prefixes are already checked against the cluster's
                    known = min(rep_a.commit_index, rep_b.commit_index)
                    check_log_matching(f"{room} {a}/{b}", rep_a, rep_b, known)

    def run_until(self, done: Callable[[], bool], limit_ms: int) -> bool:
        """Step until done() or `limit_ms` of simulated time pass."""
        deadline = self.cluster.now + limit_ms
        while self.events and self.cluster.now <= deadline:
            if done():
                return True
            self.step()
        return done()

    # --------------------------------------------------------------- network

    def _schedule(self, msg: Msg) -> None:
        c = self.config
        if msg.kind in (APPEND, SNAPSHOT):
            inc = msg.incarnation
            self.after(c.rpc_timeout_ms, lambda: self.cluster.rpc_failed(msg.src, inc, msg.rpc))
        drop = c.drop if self.chaos else 0.0
        if self.rng.random() < drop:
            return
        copies = 2 if self.chaos and self.rng.random() < c.duplicate else 1
        for _ in range(copies):
            self.after(self.rng.randint(*c.latency_ms), lambda: self.cluster.deliver(msg))

    def _lost(self, msg: Msg) -> None:
        """Lost messages time out on their own (see the RPC deadline in _schedule)."""

    def _up_view(self, node_id: str) -> set[str]:
        """A failure detector: a crash is seen at once (the kernel resets the
        connections), a pause or a cut link after `detect_ms`; `lies` invert it."""
        cluster = self.cluster
        up = {node_id}
        for other, peer in cluster.nodes.items():
            if other == node_id:
                continue
            reachable = (
                peer.running
                and (node_id, other) not in cluster.blocked
                and (other, node_id) not in cluster.blocked
            )
            key = (node_id, other)
            if reachable:
                self._unreachable_since.pop(key, None)
            else:
                since = self._unreachable_since.setdefault(key, cluster.now)
                reachable = cluster.now - since < self.config.detect_ms and not peer.crashed
            if key in self.lies:
                reachable = not reachable
            if reachable:
                up.add(other)
        return up

    def _crash_point(self, node: SimNode, where: str) -> bool:
        if not self.chaos or self.rng.random() >= self.config.crash_mid_step:
            return False
        self.cluster.checker.stats[f"crash_{where}"] += 1
        self.log.append(f"{self.cluster.now} crash {node.id} at {where}")
        self.after(self.rng.randrange(50, 3000), lambda: self._restart(node.id))
        return True

    # ------------------------------------------------------------------ nodes

    def _tick(self, node_id: str) -> None:
        self.cluster.tick(node_id)
        self.after(self.config.tick_ms, lambda: self._tick(node_id))

    def _restart(self, node_id: str) -> None:
        if self.cluster.nodes[node_id].crashed:
            self.log.append(f"{self.cluster.now} restart {node_id}")
            self.cluster.restart(node_id)

    def _resume(self, node_id: str) -> None:
        if self.cluster.nodes[node_id].paused:
            self.log.append(f"{self.cluster.now} resume {node_id}")
            self.cluster.resume(node_id)

    # ---------------------------------------------------------------- clients

    def _client(self, room: str, client: Client) -> None:
        c = self.config
        cluster = self.cluster
        if client.current is None and (self.publishing or client.count == 0):
            client.count += 1
            first = client.user == "u0" and client.count == 1
            client.current = "create" if first else f"{client.user}-m{client.count}"
            client.next_try = cluster.now
        if client.current is not None and cluster.now >= client.next_try:
            admins = cluster.administrators(room)
            founder = cluster.rooms[room][0]
            founding = self.cluster.nodes[founder].replicas.get(room)
            if (
                client.current == "create"
                and not admins
                and self._none_committed(room)
                and (founding is None or founding.role is not Role.ADMINISTRATOR)
            ):
                # nobody else holds the room: the create founds it (at one
                # node, as placement's first choice would), replacing a copy
                # of an earlier try that never reached anyone
                cluster.found(founder, room)
            elif admins:
                node = self.rng.choice(admins)
                user = OWNER if client.current == "create" else client.user
                cluster.publish(node, room, user, client.current, f"{client.current}@{node}")
            client.next_try = cluster.now + c.retry_ms
        if (admins_now := cluster.administrators(room)) and self.rng.random() < 0.3:
            cluster.read(self.rng.choice(admins_now), room)
        if self.publishing:
            self.after(self.rng.randrange(*c.publish_every_ms), lambda: self._client(room, client))
        elif client.current is not None:
            self.after(c.retry_ms // 4, lambda: self._client(room, client))

    def _on_ack(self, room: str, entry: LogEntry) -> None:
        for client in self.clients[room]:
            user = OWNER if client.current == "create" else client.user
            # a create entry's id is the room's incarnation
            msg_id = "create" if entry.kind is EntryKind.CREATE else entry.client_msg_id
            if client.current == msg_id and user == entry.user:
                client.acked.append(entry)
                client.current = None

    def _none_committed(self, room: str) -> bool:
        """What the node's create asks of LocateRoom: no incarnation of the
        room is on a quorum of nodes' disks, so none can have committed."""
        held: Counter[str] = Counter()
        for node in self.cluster.nodes.values():
            disk = node.disk.get(room)
            if disk:
                held[disk[min(disk)].client_msg_id] += 1
        quorum = self.config.replication // 2 + 1
        return all(count < quorum for count in held.values())

    def pending_clients(self) -> list[tuple[str, str]]:
        """Client messages not acknowledged yet, as (room, client_msg_id)."""
        return [
            (room, c.current)
            for room, clients in self.clients.items()
            for c in clients
            if c.current is not None
        ]

    # ----------------------------------------------------------------- faults

    def _fault(self) -> None:
        if not self.chaos:
            return
        cluster = self.cluster
        names = sorted(cluster.nodes)
        rng = self.rng
        now = cluster.now
        action = rng.choice(
            ["crash", "crash_admin", "pause", "pause_admin", "isolate", "isolate_admin",
             "split", "one_way", "lie", "lie", "mute_admin", "drain_admin", "nothing"]
            + ["move"] * self.config.moves
        )  # fmt: skip
        victim = rng.choice(names)
        admins = [n for room in cluster.rooms for n in cluster.administrators(room)]
        if action.endswith("_admin"):
            action = action.removesuffix("_admin")
            if admins:
                victim = rng.choice(admins)
        heal_after = rng.randrange(100, 6000)
        if action == "move":
            room = rng.choice(sorted(cluster.rooms))
            admin = self.serving(room)
            if admin is not None:
                target = rng.sample(names, self.config.replication)
                self.log.append(f"{now} move {room} from {admin} to {target}")
                cluster.move(admin, room, target)
        elif action == "crash":
            cluster.crash(victim)
            self.after(rng.randrange(50, 5000), lambda: self._restart(victim))
        elif action == "pause":
            cluster.pause(victim)
            self.after(rng.randrange(50, 8000), lambda: self._resume(victim))
        elif action == "isolate":
            links = {(victim, o) for o in names if o != victim}
            self._partition(links | {(b, a) for a, b in links}, heal_after)
        elif action == "split":
            shuffled = names[:]
            rng.shuffle(shuffled)
            cut = rng.randrange(1, len(names)) if len(names) > 1 else 1
            side = set(shuffled[:cut])
            links = {(a, b) for a in names for b in names if (a in side) != (b in side)}
            self._partition(links, heal_after)
        elif action == "one_way":
            # asymmetric: the victim's messages to some peers are lost, or theirs to it
            peers = [o for o in names if o != victim and rng.random() < 0.7]
            outgoing = rng.random() < 0.5
            links = {(victim, o) if outgoing else (o, victim) for o in peers}
            self._partition(links, heal_after)
        elif action == "mute":
            # the administrator hears everyone, but nobody hears it
            self._partition({(victim, o) for o in names if o != victim}, heal_after)
        elif action == "lie" and len(names) > 1:
            other = rng.choice([o for o in names if o != victim])
            lie = (victim, other)
            self.lies.add(lie)
            self.log.append(f"{now} detector of {victim} lies about {other}")
            self.after(heal_after, lambda: self.lies.discard(lie))
        elif action == "drain" and not cluster.nodes[victim].crashed:
            # SIGTERM: hand over, then exit a little later; it restarts afresh
            cluster.drain(victim)
            self.log.append(f"{now} drain {victim}")
            incarnation = cluster.nodes[victim].incarnation

            def exit_and_restart() -> None:
                if cluster.nodes[victim].incarnation != incarnation:
                    return  # it died or was restarted meanwhile
                cluster.crash(victim)
                self.after(rng.randrange(50, 3000), lambda: self._restart(victim))

            self.after(rng.randrange(100, 3000), exit_and_restart)
        if action in ("crash", "pause"):
            self.log.append(f"{now} {action} {victim}")
        self.after(rng.randrange(*self.config.fault_every_ms), self._fault)

    def _partition(self, links: set[tuple[str, str]], heal_after: int) -> None:
        if not links:
            return
        fault = ("partition", frozenset(links))
        self.faults.append(fault)
        self._recompute_blocked()
        self.log.append(f"{self.cluster.now} cut {sorted(links)} for {heal_after}ms")

        def heal() -> None:
            if fault in self.faults:
                self.faults.remove(fault)
                self._recompute_blocked()

        self.after(heal_after, heal)

    def _recompute_blocked(self) -> None:
        self.cluster.blocked = set().union(*(links for _, links in self.faults))

    def heal(self) -> None:
        """End the chaos: every node up, links whole, detectors truthful, no loss."""
        self.chaos = False
        self.publishing = False
        self.faults.clear()
        self.lies.clear()
        self.cluster.blocked = set()
        for node_id, node in sorted(self.cluster.nodes.items()):
            if node.engine is not None and node.engine.draining:
                self.cluster.crash(node_id)  # its drain ends: it exits
            if node.crashed:
                self.cluster.restart(node_id)
            elif node.paused:
                self.cluster.resume(node_id)
        for room, clients in self.clients.items():
            for client in clients:
                self.after(1, lambda r=room, c=client: self._client(r, c))

    def steady(self, ms: int) -> int:
        """Run for ms with clients publishing and no new faults (those set up
        by hand, like `lies`, stay). Returns how many messages were acknowledged."""
        self.chaos = False
        self.publishing = True
        before = len(self.cluster.checker.acked)
        for room, clients in self.clients.items():
            for client in clients:
                self.after(1, lambda r=room, c=client: self._client(r, c))
        self.run_until(lambda: False, ms)
        self.publishing = False
        return len(self.cluster.checker.acked) - before

    # ------------------------------------------------------------------- run

    def serving(self, room: str) -> str | None:
        """The running administrator that serves the room, if there is one."""
        for node in self.cluster.administrators(room):
            if self.cluster.nodes[node].replicas[room].serving:
                return node
        return None

    def quiet(self) -> bool:
        """Every room serving, all client messages acknowledged, every replica
        holding and having committed the administrator's whole log."""
        if self.pending_clients():
            return False
        for node in self.cluster.nodes.values():
            if node.engine is None or node.writing is not None or node.engine.has_ready():
                return False  # down (a drained node exiting), or still busy
        return all([self._room_quiet(room) for room in self.cluster.rooms])

    def _room_quiet(self, room: str) -> bool:
        admin = self.serving(room)
        if admin is None:
            return False
        target = self.cluster.nodes[admin].replicas[room]
        if target.move is not None or target.tip.joining:
            return False  # a move still under way
        members = list(target.replicas)
        if self.cluster.holders(room) != sorted(members):
            self.cluster.reconcile(room)
            return False  # copies still to be made, or to be dropped
        for node in members:
            rep = self.cluster.nodes[node].replicas[room]
            if rep.commit_index != target.last_index or rep.last_index != target.last_index:
                if rep.incarnation != target.incarnation:
                    self.cluster.reconcile(room)
                return False
        return True

    def run(self) -> Simulation:
        """Chaos for `steps` events, then heal, check liveness and the final state.

        Raises:
            InvariantViolation: a safety rule broke, or the room did not
                recover within `liveness_ms` after healing.
        """
        for _ in range(self.config.steps):
            self.step()
        self.heal()
        start = self.cluster.now
        # liveness: a serving administrator and a new message committed, in bounded time
        for room, clients in self.clients.items():
            probe = clients[0]
            if not self.run_until(
                lambda r=room: self.serving(r) is not None, self.config.liveness_ms
            ):
                self._fail(
                    f"{room}: no serving administrator {self.config.liveness_ms}ms after healing"
                )
            if probe.current is None:
                probe.count += 1
                probe.current = f"{probe.user}-probe{probe.count}"
                probe.next_try = self.cluster.now
                self.after(0, lambda r=room, c=probe: self._client(r, c))
        self.recovery_ms = self.cluster.now - start
        budget = self.config.liveness_ms - (self.cluster.now - start)
        if not self.run_until(self.quiet, max(budget, 1)):
            self._fail(
                f"not quiet {self.config.liveness_ms}ms after healing; pending "
                f"{self.pending_clients()}"
            )
        self.quiet_ms = self.cluster.now - start
        self.cluster.checker.final(self.cluster)
        return self

    def _fail(self, what: str) -> None:
        state = []
        for node_id, node in sorted(self.cluster.nodes.items()):
            for room, rep in node.replicas.items():
                state.append(
                    f"{node_id}/{room} {rep.role.value} e{rep.epoch} voted={rep.voted_for!r} "
                    f"last={rep.last_index}/{rep.last_epoch} commit={rep.commit_index} "
                    f"admin={rep.administrator!r}"
                )
        raise InvariantViolation(
            f"seed {self.seed}: {what}\n"
            + "\n".join(state)
            + "\nfaults:\n"
            + "\n".join(self.log[-30:])
        )


def run_seed(seed: int, nodes: int, steps: int, **overrides: Any) -> Simulation:
    """Run one randomized simulation and its checks; the seed is in any failure."""
    sim = Simulation(seed, SimConfig.for_seed(seed, nodes, steps, **overrides))
    try:
        return sim.run()
    except InvariantViolation as exc:
        if str(exc).startswith(f"seed {seed}:"):
            raise
        raise InvariantViolation(
            f"seed {seed} (nodes={nodes}, steps={steps}, {overrides}) at "
            f"t={sim.cluster.now}ms step {sim.steps}: {exc}\nfaults:\n" + "\n".join(sim.log[-30:])
        ) from exc


__all__ = [
    "APPEND",
    "APPEND_RESULT",
    "VOTE",
    "VOTE_RESULT",
    "Checker",
    "Cluster",
    "InvariantViolation",
    "Msg",
    "SimConfig",
    "Simulation",
    "check_log_matching",
    "one_room",
    "peer_pb",
    "room_replicas",
    "run_for",
    "run_seed",
    "settle",
    "start",
    "whole_log",
]
