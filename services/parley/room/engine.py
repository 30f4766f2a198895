"""The room engine: every replica of one node, as one pure state machine.

The node (`parley.node.engine_loop`) and the simulation in the tests drive
this same object, in the same loop, after the pattern of etcd-io/raft's
`RawNode`:

    engine.step_*(...) / propose / tick / read / drain   # any inputs
    ready = engine.ready(now)
    send(ready.eager)            # may go before the writes are durable
    store.write(ready.writes)    # durable before anything below
    engine.advance(ready)
    send(ready.messages)
    apply(ready.committed, ready.roles, ready.reads)

`ready.messages` holds everything that depends on this batch's writes:
vote requests of a new epoch, votes granted, append answers (they promise
the entries are held), and appends of an administrator whose epoch is not
on disk yet. `ready.eager` holds only appends of administrators whose epoch
and vote are already durable: Raft lets an administrator send entries while
it writes them itself, because it counts itself towards a commit only once
its own write is durable (`on_persisted`). A node therefore never sends a
message of epoch E before E and its vote are durable.

Nothing here awaits, sleeps or reads a clock.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from parley._generated import peer_service_pb2 as peer_pb
from parley.coordination.move import MoveOutcome
from parley.room import shared
from parley.room.entries import EntryKind, HardState, LogEntry
from parley.room.records import RoomRecord, RoomWrite
from parley.room.replica import ReadAnswer, Role, RoomReplica, Timing
from parley.room.state import PUBLIC, RoomOptions

ELECTIONS_PER_TICK = 128
"""Elections one engine begins per tick at most (a tick is 50 ms on a node)."""

ANY_INCARNATION = "*"
"""A tombstone's incarnation when the copy's is not known (it was damaged)."""

TOMBSTONE = "~"
"""Marks a dropped room's stored hard state: voted_for is TOMBSTONE + its
incarnation, epoch the last epoch this node saw (see `RoomEngine.restore`)."""

PeerBody = (
    peer_pb.RoomAppend
    | peer_pb.RoomSnapshot
    | peer_pb.RoomAppendResult
    | peer_pb.RoomVote
    | peer_pb.RoomVoteResult
)
ReplicationBody = peer_pb.RoomAppend | peer_pb.RoomSnapshot


@dataclass(frozen=True, slots=True)
class Outbound:
    """One room's message to one peer.

    `reply_to` is the token of the request a result answers (given to
    `step_append` / `step_vote`); `id` names an append, so that its answer
    or failure can be reported back with `step_append_result` /
    `step_append_failed`.
    """

    to: str
    room: str
    body: PeerBody
    reply_to: int = 0
    id: int = 0


@dataclass(frozen=True, slots=True)
class RoleChange:
    """A replica changed role since the last Ready."""

    room: str
    before: Role
    after: Role
    epoch: int


@dataclass(slots=True)
class Ready:
    """What the engine asks of its driver, in order; see the module docstring."""

    writes: list[RoomWrite] = field(default_factory=list)
    eager: list[Outbound] = field(default_factory=list)
    messages: list[Outbound] = field(default_factory=list)
    committed: list[tuple[str, list[LogEntry]]] = field(default_factory=list)
    roles: list[RoleChange] = field(default_factory=list)
    reads: list[tuple[str, ReadAnswer]] = field(default_factory=list)
    # (room, last index, its epoch) for each write: what `advance` marks held
    persisted: list[tuple[str, int, int]] = field(default_factory=list)
    # rooms this node let go of (deleted, or moved to a group without it);
    # their drop is among `writes`
    dropped: list[str] = field(default_factory=list)
    # moves this node coordinated that ended
    moves: list[MoveOutcome] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.writes
            or self.eager
            or self.messages
            or self.committed
            or self.roles
            or self.reads
            or self.dropped
            or self.moves
        )


def _unknown_answer(body: PeerBody) -> PeerBody:
    """What a node that holds no replica of the room answers to a request."""
    if isinstance(body, peer_pb.RoomAppendResult):
        return peer_pb.RoomAppendResult(room=body.room, success=False, unknown=True, retry_index=1)
    if isinstance(body, peer_pb.RoomVoteResult):
        return peer_pb.RoomVoteResult(room=body.room, granted=False, pre=body.pre)
    return body


@dataclass(frozen=True, slots=True)
class _SentAppend:
    room: str
    peer: str
    body: ReplicationBody
    read_round: int


class RoomEngine:
    """Every room replica of one node, fed inputs and drained as `Ready`s.

    Args:
        node_id: this node's id.
        timing: protocol timers for every replica.
        rng: seeds each replica's election jitter (simulations pass a seeded one).
        window: appends in flight per room and peer before the next waits
            for an answer (1: one per round trip, batching what piles up).
    """

    def __init__(
        self,
        node_id: str,
        timing: Timing | None = None,
        rng: random.Random | None = None,
        window: int = 1,
    ) -> None:
        self.node_id = node_id
        self.timing = timing or Timing()
        self._rng = rng or random.Random()
        self.window = window
        self.rooms: dict[str, RoomReplica] = {}
        self.draining = False
        # elections that may begin in one tick: when a node dies, the tens of
        # thousands of rooms it administered must not all ask for votes at
        # once (one vote RPC per peer with every room in it, answered after
        # the candidates gave up: they ask again, and nothing is ever elected)
        self.elections_per_tick = ELECTIONS_PER_TICK
        # test-only: treat every message as eager (send before persisting),
        # to show the simulation catches a driver that does
        self.unsafe_send_before_persist = False
        self._touched: set[str] = set()
        self._outbox: list[Outbound] = []
        self._roles: dict[str, Role] = {}
        self._durable_epoch: dict[str, int] = {}
        self._sent: dict[int, _SentAppend] = {}
        self._in_flight: Counter[tuple[str, str]] = Counter()
        self._next_id = 0
        self._up: set[str] = {node_id}
        self._stale: set[str] = set()
        self._awake: set[str] = set()
        # rooms this node dropped: (last epoch seen, incarnation). A copy
        # made again later (the node rejoins the group) starts from that
        # epoch, so that a stale administrator of an older one cannot use
        # the fresh copy to commit (a dropped copy forgot what it promised)
        self._tombstones: dict[str, tuple[int, str]] = {}
        # called for each replica created, before it takes any input
        self.on_create: Callable[[RoomReplica], None] = lambda _replica: None

    # ------------------------------------------------------------ replicas

    def add(
        self, room: str, replicas: list[str], record: RoomRecord | None, now_ms: int
    ) -> RoomReplica:
        """Host a room here: resume it from its stored record, or start it empty."""
        replica = RoomReplica(
            room,
            self.node_id,
            replicas,
            record,
            now_ms,
            self.timing,
            # one generator for every replica: a Random each would be 2.5 KB
            # of state per room (the simulation stays deterministic: one
            # engine's replicas draw in a deterministic order)
            self._rng,
            # and the detector's view, until the next tick brings its own
            self._up if self._up != {self.node_id} else None,
        )
        replica.draining = self.draining
        self.rooms[room] = replica
        self._awake.add(room)
        self._roles[room] = replica.role
        self._durable_epoch[room] = record.hard.epoch if record else 0
        self.on_create(replica)
        return replica

    def restore(
        self, room: str, replicas: list[str], record: RoomRecord, now_ms: int
    ) -> RoomReplica | None:
        """Load a stored record at start-up: a replica, or (no entries) the
        tombstone of a dropped room, or nothing (a vote without a log is no
        copy of anything)."""
        if record.damaged:
            # the copy cannot be trusted: hold none, so the administrator
            # sends a snapshot; the next epoch up keeps this node from
            # answering in an epoch whose vote it may have forgotten
            self._tombstones[room] = (record.hard.epoch + 1, ANY_INCARNATION)
            return None
        if record.entries or record.snapshot:
            return self.add(room, replicas, record, now_ms)
        if record.hard.voted_for.startswith(TOMBSTONE):
            self._tombstones[room] = (record.hard.epoch, record.hard.voted_for[1:])
        return None

    def found(
        self,
        room: str,
        replicas: list[str],
        user: str,
        incarnation: str,
        now_ms: int,
        options: RoomOptions = PUBLIC,
    ) -> LogEntry:
        """Create a new room with this node as its first administrator; the
        create entry (returned, not yet committed) names the group.

        A copy this node holds already is replaced: the caller found that no
        other node holds the room, so that copy never committed anything (a
        founder that died before any peer had its create) and no client was
        ever told of it.
        """
        self._tombstones.pop(room, None)  # a new incarnation: another room
        replica = self._taking(room)
        stale = replica is not None and replica.last_index > 0
        if replica is None or stale:
            replica = self.add(room, replicas, None, now_ms)
        if stale:
            replica.discard_stored()  # the old copy goes in the same write
        entry = replica.found(user, incarnation, now_ms, options)
        self._touched.add(room)
        return entry

    def move(self, room: str, target: list[str], now_ms: int) -> bool:
        """Start moving a room this node administers to `target` (see
        `parley.coordination.move`). Returns False when no move starts."""
        replica = self._taking(room)
        if replica is None or not replica.begin_move(target, now_ms):
            return False
        self._touched.add(room)
        return True

    def retain(self, room: str, upto: int) -> None:
        """Retention is about to delete the room's stored entries up to
        `upto`: the replica folds them and stores a snapshot there."""
        replica = self._taking(room)
        if replica is not None:
            replica.retain(upto)
            self._touched.add(room)

    def get(self, room: str) -> RoomReplica | None:
        """The room's replica on this node, if it has one."""
        return self.rooms.get(room)

    def _live(self, room: str) -> RoomReplica:
        """`_taking` for a room the caller knows is here."""
        replica = self.rooms[room]
        replica.resume()
        return replica

    def _taking(self, room: str) -> RoomReplica | None:
        """The room's replica, about to take an input: a resting one gets
        its per-peer tables back first (see `RoomReplica.rest`)."""
        replica = self.rooms.get(room)
        if replica is not None:
            replica.resume()
        return replica

    # -------------------------------------------------------------- inputs

    def propose(
        self,
        room: str,
        kind: EntryKind,
        user: str,
        text: str,
        client_msg_id: str,
        now_ms: int,
        target: int = 0,
    ) -> LogEntry:
        """Append a new entry as administrator (validated by the caller)."""
        entry = self._live(room).propose(kind, user, text, client_msg_id, now_ms, target)
        self._touched.add(room)
        return entry

    def campaign(self, room: str, now_ms: int) -> None:
        """Start a real election now, skipping the pre-vote (a room nobody
        has written to yet, or a scripted test)."""
        self._live(room).campaign(now_ms)
        self._touched.add(room)

    def heartbeat(self, room: str) -> None:
        """Send the room's peers an append now, due or not."""
        self._live(room).heartbeat()
        self._touched.add(room)

    def read(self, room: str, token: int) -> None:
        """Ask to serve a read of the room; the answer comes in `Ready.reads`."""
        self._live(room).request_read(token)
        self._touched.add(room)

    def tick(self, now_ms: int, up: set[str]) -> list[str]:
        """Advance every replica's timers.

        Args:
            up: nodes the failure detector sees up (self included).

        Returns:
            The rooms whose election (pre-vote) began.
        """
        changed = set(up) != self._up
        self._up = set(up)
        view = self._up - {self.node_id} if self.draining else self._up
        started: list[str] = []
        # quiescent rooms need no periodic work: only a change of the
        # detector's view (or any input for them) wakes them
        rooms = list(self.rooms if changed else self._awake)
        for room in rooms:
            replica = self.rooms[room]
            if replica.tick(now_ms, view, len(started) < self.elections_per_tick):
                started.append(room)
            # only rooms the tick gave something to do go through the next
            # Ready (tens of thousands are ticked while they elect)
            if (
                replica.has_effects
                or replica.role is not self._roles.get(room, Role.FOLLOWER)
                or replica.quiet == (room in self._awake)
                or replica.removed
            ):
                self._touched.add(room)
        return started

    @property
    def awake(self) -> set[str]:
        """Rooms that are not quiescent (as of the last Ready)."""
        return self._awake

    def drain(self, now_ms: int, up: set[str]) -> None:
        """Shutting down: hand every administered room to an up-to-date peer
        (of those in `up`) and never campaign again."""
        self._up = set(up)
        self.draining = True
        for room, replica in self.rooms.items():
            replica.resume()
            replica.draining = True
            if replica.role is Role.ADMINISTRATOR:
                replica.transfer(now_ms, self._up)
            self._touched.add(room)

    def step_append(self, sender: str, msg: peer_pb.RoomAppend, token: int, now_ms: int) -> None:
        """An administrator's append; the answer comes in `Ready.messages`."""
        replica = self._taking(msg.room) or self._copy_for(sender, msg, token, now_ms)
        if replica is None:
            return
        result = replica.handle_append(sender, msg, now_ms)
        self._outbox.append(Outbound(sender, msg.room, result, reply_to=token))
        self._touched.add(msg.room)

    def step_snapshot(
        self, sender: str, msg: peer_pb.RoomSnapshot, token: int, now_ms: int
    ) -> None:
        """An administrator's snapshot (its history, staged in the store
        ahead of it, goes in with it); answered like an append."""
        replica = self._taking(msg.room) or self._copy_for(sender, msg, token, now_ms)
        if replica is None:
            return
        result = replica.handle_snapshot(sender, msg, now_ms)
        self._outbox.append(Outbound(sender, msg.room, result, reply_to=token))
        self._touched.add(msg.room)

    def _copy_for(
        self, sender: str, msg: ReplicationBody, token: int, now_ms: int
    ) -> RoomReplica | None:
        """A replica for a room this node does not hold, when the
        administrator names this node among its replicas or learners in an
        append from the start of the log or a snapshot; else the answer."""
        tomb = self._tombstones.get(msg.room)
        known = tomb is not None and tomb[1] in (msg.incarnation, ANY_INCARNATION) and bool(tomb[1])
        if known and tomb is not None and msg.epoch < tomb[0]:
            # an administrator of an epoch this node has seen end
            old = peer_pb.RoomAppendResult(room=msg.room, epoch=tomb[0], success=False)
            self._outbox.append(Outbound(sender, msg.room, old, reply_to=token))
            return None
        whole = isinstance(msg, peer_pb.RoomSnapshot) or msg.prev_index == 0
        if not whole or self.node_id not in msg.members:
            unknown = peer_pb.RoomAppendResult(
                room=msg.room, success=False, unknown=True, retry_index=1
            )
            self._outbox.append(Outbound(sender, msg.room, unknown, reply_to=token))
            return None
        record = RoomRecord(msg.room, HardState(tomb[0] if tomb and known else 0), [])
        replica = self.add(msg.room, list(shared.group(msg.members)), record, now_ms)
        replica.made_from(msg.config_index)
        if tomb is not None and tomb[1] == ANY_INCARNATION:
            replica.discard_stored()  # the damaged copy's rows go with the first write
        self._tombstones.pop(msg.room, None)
        return replica

    def step_vote(self, candidate: str, msg: peer_pb.RoomVote, token: int, now_ms: int) -> None:
        """A (pre-)vote request; the answer comes in `Ready.messages`."""
        replica = self._taking(msg.room)
        if replica is None:
            # a room this node does not hold: never a vote, never a replica
            refused = peer_pb.RoomVoteResult(room=msg.room, granted=False, pre=msg.pre)
            self._outbox.append(Outbound(candidate, msg.room, refused, reply_to=token))
            return
        result = replica.handle_vote(candidate, msg, now_ms)
        self._outbox.append(Outbound(candidate, msg.room, result, reply_to=token))
        self._touched.add(msg.room)

    def step_append_result(
        self, peer: str, append_id: int, result: peer_pb.RoomAppendResult, now_ms: int
    ) -> None:
        """A follower's answer to the append `append_id`."""
        sent = self._sent.pop(append_id, None)
        if sent is None:
            return  # a duplicate answer, or one to a failed append
        self._landed(sent)
        replica = self._taking(sent.room)
        if replica is None:
            return
        replica.handle_append_result(peer, sent.body, result, now_ms, sent.read_round)
        self._touched.add(sent.room)

    def step_append_failed(self, append_id: int) -> None:
        """The append `append_id` got no answer (RPC error or timeout)."""
        sent = self._sent.pop(append_id, None)
        if sent is None:
            return
        self._landed(sent)
        replica = self._taking(sent.room)
        if replica is not None:
            replica.append_failed(sent.peer, sent.body)
            self._touched.add(sent.room)

    def _landed(self, sent: _SentAppend) -> None:
        key = (sent.room, sent.peer)
        self._in_flight[key] -= 1
        if self._in_flight[key] <= 0:
            del self._in_flight[key]  # an idle room keeps no counter

    def step_vote_result(self, voter: str, result: peer_pb.RoomVoteResult, now_ms: int) -> None:
        """A peer's answer to a (pre-)vote request."""
        replica = self._taking(result.room)
        if replica is not None:
            replica.handle_vote_result(voter, result, now_ms)
            self._touched.add(result.room)

    # -------------------------------------------------------------- output

    def has_ready(self) -> bool:
        """True when `ready()` has something to do."""
        return bool(self._touched or self._outbox or self._stale)

    def ready(self, now_ms: int) -> Ready:
        """Everything the inputs so far produced; hand it back with `advance`."""
        ready = Ready()
        touched, self._touched = self._touched, set()
        outbox, self._outbox = self._outbox, []
        for room in sorted(self._stale):
            ready.writes.append(RoomWrite(room, drop=True, hard=self._tombstone(room)))
            ready.dropped.append(room)
        self._stale.clear()
        for room in sorted(touched):
            replica = self.rooms.get(room)
            if replica is None:
                continue
            replica.compact()
            write = replica.take_write()
            if write is not None:
                ready.writes.append(write)
                ready.persisted.append((room, replica.last_index, replica.last_epoch))
            vote = replica.take_vote_request()
            if vote is not None:
                outbox.extend(Outbound(peer, room, vote) for peer in replica.peers)
            eager = (
                self._durable_epoch.get(room) == replica.epoch
                and (write is None or write.hard is None)
            ) or self.unsafe_send_before_persist
            target = ready.eager if eager else ready.messages
            target.extend(self._appends(replica, now_ms))
            committed = replica.take_committed()
            if committed:
                ready.committed.append((room, committed))
            ready.reads.extend((room, answer) for answer in replica.take_reads())
            ready.moves.extend(replica.take_moves())
            before = self._roles.get(room, Role.FOLLOWER)
            if replica.role is not before:
                self._roles[room] = replica.role
                ready.roles.append(RoleChange(room, before, replica.role, replica.epoch))
            if replica.removed:
                self._drop(room, ready)
            elif replica.quiet:
                self._awake.discard(room)
                if not any((room, p) in self._in_flight for p in replica.targets):
                    replica.rest()
            else:
                self._awake.add(room)
        if self.unsafe_send_before_persist:
            ready.eager.extend(outbox)
        else:
            ready.messages.extend(outbox)
        for room in ready.dropped:
            ready.eager = self._void_answers(room, ready.eager)
            ready.messages = self._void_answers(room, ready.messages)
        return ready

    def _drop(self, room: str, ready: Ready) -> None:
        """Forget a room this node is done with, in memory and (with this
        Ready's writes) on disk."""
        self._forget(room)
        ready.writes.append(RoomWrite(room, drop=True, hard=self._tombstone(room)))
        ready.dropped.append(room)

    def _tombstone(self, room: str) -> HardState:
        epoch, incarnation = self._tombstones[room]
        return HardState(epoch, TOMBSTONE + incarnation)

    def _forget(self, room: str) -> None:
        replica = self.rooms[room]
        self._tombstones[room] = (replica.epoch, replica.incarnation)
        del self.rooms[room]
        self._awake.discard(room)
        self._roles.pop(room, None)
        self._durable_epoch.pop(room, None)

    @staticmethod
    def _void_answers(room: str, messages: list[Outbound]) -> list[Outbound]:
        """Answers about a dropped room promise nothing any more: each says
        the room is unknown here (other messages of the room are dropped)."""
        return [
            Outbound(m.to, m.room, _unknown_answer(m.body), reply_to=m.reply_to)
            if m.room == room and m.reply_to
            else m
            for m in messages
            if m.room != room or m.reply_to
        ]

    def discard_damaged(self, room: str) -> None:
        """The store found this node's copy of the room damaged (a read
        failed its checksum): forget it, as if never held, so that the
        administrator rebuilds it with a snapshot; like a damaged copy found
        at start-up, it answers nothing in the epoch it was in."""
        replica = self.rooms.get(room)
        if replica is None:
            return
        epoch = replica.epoch
        self._forget(room)
        self._tombstones[room] = (epoch + 1, ANY_INCARNATION)
        self._stale.add(room)
        self._outbox = self._void_answers(room, self._outbox)

    def drop(self, room: str) -> None:
        """Forget a stale copy of a room (its group went on without this
        node; see `parley.coordination.move.superseded`)."""
        if room not in self.rooms:
            return
        self._forget(room)
        self._stale.add(room)
        self._outbox = self._void_answers(room, self._outbox)

    def _appends(self, replica: RoomReplica, now_ms: int) -> Iterable[Outbound]:
        room = replica.room
        encoded: dict[tuple[int, int], list[peer_pb.LogEntry]] = {}
        for peer in sorted(replica.dirty_peers):
            key = (room, peer)
            while self._in_flight[key] < self.window:
                read_round = replica.read_round
                body = replica.append_for(peer, now_ms, encoded)
                if body is None:
                    break
                self._next_id += 1
                self._sent[self._next_id] = _SentAppend(room, peer, body, read_round)
                self._in_flight[key] += 1
                yield Outbound(peer, room, body, id=self._next_id)
                if peer not in replica.dirty_peers:
                    break

    def advance(self, ready: Ready) -> None:
        """`ready.writes` are durable now: what they hold counts as held here."""
        for write in ready.writes:
            if write.hard is not None:
                self._durable_epoch[write.room] = write.hard.epoch
        for room, index, epoch in ready.persisted:
            replica = self._taking(room)
            if replica is None or not index:
                continue
            # a later input may have truncated what this write held (or a
            # snapshot replaced it)
            if index < replica.offset:
                continue
            if replica.last_index >= index and replica.epoch_at(index) == epoch:
                replica.on_persisted(index)
                self._touched.add(room)
