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
from parley.room.entries import EntryKind, LogEntry, RoomRecord, RoomWrite
from parley.room.replica import ReadAnswer, Role, RoomReplica, Timing

PeerBody = peer_pb.RoomAppend | peer_pb.RoomAppendResult | peer_pb.RoomVote | peer_pb.RoomVoteResult


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

    def __bool__(self) -> bool:
        return bool(
            self.writes or self.eager or self.messages or self.committed or self.roles or self.reads
        )


@dataclass(frozen=True, slots=True)
class _SentAppend:
    room: str
    peer: str
    body: peer_pb.RoomAppend
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
        placement: Callable[[str], list[str]] | None = None,
    ) -> None:
        self.node_id = node_id
        # the replicas a room a peer first tells this node about starts with
        # (its create entry, once replicated, names the group for good)
        self.placement = placement or (lambda _room: [node_id])
        self.timing = timing or Timing()
        self._rng = rng or random.Random()
        self.window = window
        self.rooms: dict[str, RoomReplica] = {}
        self.draining = False
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
            random.Random(self._rng.getrandbits(64)),
        )
        replica.draining = self.draining
        self.rooms[room] = replica
        self._roles[room] = replica.role
        self._durable_epoch[room] = record.hard.epoch if record else 0
        self.on_create(replica)
        return replica

    def get(self, room: str) -> RoomReplica | None:
        """The room's replica on this node, if it has one."""
        return self.rooms.get(room)

    # -------------------------------------------------------------- inputs

    def propose(
        self, room: str, kind: EntryKind, user: str, text: str, client_msg_id: str, now_ms: int
    ) -> LogEntry:
        """Append a new entry as administrator (validated by the caller)."""
        entry = self.rooms[room].propose(kind, user, text, client_msg_id, now_ms)
        self._touched.add(room)
        return entry

    def campaign(self, room: str, now_ms: int) -> None:
        """Start a real election now, skipping the pre-vote (a room nobody
        has written to yet, or a scripted test)."""
        self.rooms[room].campaign(now_ms)
        self._touched.add(room)

    def heartbeat(self, room: str) -> None:
        """Send the room's peers an append now, due or not."""
        self.rooms[room].heartbeat()
        self._touched.add(room)

    def read(self, room: str, token: int) -> None:
        """Ask to serve a read of the room; the answer comes in `Ready.reads`."""
        self.rooms[room].request_read(token)
        self._touched.add(room)

    def tick(self, now_ms: int, up: set[str]) -> list[str]:
        """Advance every replica's timers.

        Args:
            up: nodes the failure detector sees up (self included).

        Returns:
            The rooms whose election (pre-vote) began.
        """
        self._up = set(up)
        view = self._up - {self.node_id} if self.draining else self._up
        started = []
        for room, replica in self.rooms.items():
            if replica.tick(now_ms, view):
                started.append(room)
            self._touched.add(room)
        return started

    def drain(self, now_ms: int, up: set[str]) -> None:
        """Shutting down: hand every administered room to an up-to-date peer
        (of those in `up`) and never campaign again."""
        self._up = set(up)
        self.draining = True
        for room, replica in self.rooms.items():
            replica.draining = True
            if replica.role is Role.ADMINISTRATOR:
                replica.transfer(now_ms, self._up)
            self._touched.add(room)

    def step_append(self, sender: str, msg: peer_pb.RoomAppend, token: int, now_ms: int) -> None:
        """An administrator's append; the answer comes in `Ready.messages`."""
        replica = self._replica_for(msg.room, now_ms)
        result = replica.handle_append(sender, msg, now_ms)
        self._outbox.append(Outbound(sender, msg.room, result, reply_to=token))
        self._touched.add(msg.room)

    def step_vote(self, candidate: str, msg: peer_pb.RoomVote, token: int, now_ms: int) -> None:
        """A (pre-)vote request; the answer comes in `Ready.messages`."""
        replica = self._replica_for(msg.room, now_ms)
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
        self._in_flight[(sent.room, sent.peer)] -= 1
        replica = self.rooms.get(sent.room)
        if replica is None:
            return
        replica.handle_append_result(peer, sent.body, result, now_ms, sent.read_round)
        self._touched.add(sent.room)

    def step_append_failed(self, append_id: int) -> None:
        """The append `append_id` got no answer (RPC error or timeout)."""
        sent = self._sent.pop(append_id, None)
        if sent is None:
            return
        self._in_flight[(sent.room, sent.peer)] -= 1
        replica = self.rooms.get(sent.room)
        if replica is not None:
            replica.append_failed(sent.peer, sent.body)
            self._touched.add(sent.room)

    def step_vote_result(self, voter: str, result: peer_pb.RoomVoteResult, now_ms: int) -> None:
        """A peer's answer to a (pre-)vote request."""
        replica = self.rooms.get(result.room)
        if replica is not None:
            replica.handle_vote_result(voter, result, now_ms)
            self._touched.add(result.room)

    def _replica_for(self, room: str, now_ms: int) -> RoomReplica:
        replica = self.rooms.get(room)
        if replica is None:
            # a peer replicates a room placement gave this node too
            replica = self.add(room, self.placement(room), None, now_ms)
        return replica

    # -------------------------------------------------------------- output

    def has_ready(self) -> bool:
        """True when `ready()` has something to do."""
        return bool(self._touched or self._outbox)

    def ready(self, now_ms: int) -> Ready:
        """Everything the inputs so far produced; hand it back with `advance`."""
        ready = Ready()
        touched, self._touched = self._touched, set()
        outbox, self._outbox = self._outbox, []
        for room in sorted(touched):
            replica = self.rooms.get(room)
            if replica is None:
                continue
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
            before = self._roles.get(room, Role.FOLLOWER)
            if replica.role is not before:
                self._roles[room] = replica.role
                ready.roles.append(RoleChange(room, before, replica.role, replica.epoch))
        if self.unsafe_send_before_persist:
            ready.eager.extend(outbox)
        else:
            ready.messages.extend(outbox)
        return ready

    def _appends(self, replica: RoomReplica, now_ms: int) -> Iterable[Outbound]:
        room = replica.room
        for peer in sorted(replica.dirty_peers):
            key = (room, peer)
            while self._in_flight[key] < self.window:
                read_round = replica.read_round
                body = replica.append_for(peer, now_ms)
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
            replica = self.rooms.get(room)
            if replica is None or not index:
                continue
            # a later input may have truncated what this write held
            if replica.last_index >= index and replica.epoch_at(index) == epoch:
                replica.on_persisted(index)
                self._touched.add(room)
