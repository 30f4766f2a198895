"""One replica of one room: ordering, replication and election, without I/O.

This is Raft specialised to a chat room, with pre-vote, leadership transfer
and read-index (Raft thesis §9.6, §3.10, §6.4). Nobody drives a replica
directly but `parley.room.engine.RoomEngine`, which the node and the
simulation share: it feeds inputs — proposals, peer messages, health
changes, clock ticks — and drains the effects below into one `Ready`:

* `take_write()`: state that must be made durable *before* any message
  produced since the last drain is sent, and before entries count as held
  by this replica (`on_persisted`);
* `append_for(peer)`: the next batch of entries (or a heartbeat) to a peer;
* `take_vote_request()`: the (pre-)vote to ask every peer for, once an
  election began;
* `take_committed()`: newly committed entries, in order, to deliver;
* `take_reads()`: read requests confirmed (or refused) since the last call.

Nothing here blocks, sleeps or reads a clock: time is the `now_ms` argument.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Set
from dataclasses import dataclass, field
from enum import Enum

from parley._generated import peer_service_pb2 as peer_pb
from parley.coordination.move import PREPARE_TIMEOUT_MS, MoveOutcome, RoomMove, same_group
from parley.room import shared
from parley.room.codec import entry_from_pb, entry_to_pb
from parley.room.entries import VISIBLE_KINDS, EntryKind, HardState, LogEntry
from parley.room.records import RoomRecord, RoomWrite, Snapshot
from parley.room.shared import NO_ENTRIES, NO_PEERS
from parley.room.state import PUBLIC, DedupeWindow, RoomOptions, RoomState, create_text

NOBODY: frozenset[str] = frozenset()
"""The empty set most replicas' learners and leavers are (shared)."""


class Role(Enum):
    """What a replica is doing in its current epoch."""

    FOLLOWER = "follower"
    # asking whether peers would vote, without raising the epoch (pre-vote)
    PRE_CANDIDATE = "pre_candidate"
    CANDIDATE = "candidate"
    ADMINISTRATOR = "administrator"


@dataclass(frozen=True, slots=True)
class ReadAnswer:
    """A read request's outcome: `index` is the commit index the read may be
    served at once applied, or None when this replica cannot serve it."""

    token: int
    index: int | None


@dataclass(slots=True)
class _Read:
    token: int
    index: int
    round: int


@dataclass(frozen=True, slots=True)
class Timing:
    """Protocol timers in milliseconds."""

    heartbeat_ms: int = 250
    # a follower that hears nothing from its administrator for a random time
    # in [min, max) campaigns even when the failure detector says nothing
    election_min_ms: int = 2000
    election_max_ms: int = 4000
    # a candidate gives up an election after this long without a majority
    campaign_ms: int = 1000
    max_batch_entries: int = 1024
    dedupe: DedupeWindow = field(default_factory=DedupeWindow)
    # committed entries kept in memory (for followers a little behind, and
    # recent reads): the log is compacted to about this many once it holds
    # twice as many; older ones are read from the store
    log_tail: int = 1000
    # a snapshot is stored once this many entries were compacted since the
    # last: a restart loads it and the entries after it, not the whole log
    snapshot_every: int = 10_000
    # a de-duplication window up to this many ids makes a snapshot cheap (a
    # few ms); past it a snapshot is stored once the window has turned over
    cheap_snapshot_ids: int = 10_000
    # an administrator quiesces only after this long without a proposal: a
    # busy room whose log happens to be all committed at a tick would fold
    # its whole tail and copy its state (the de-duplication window) at the
    # next proposal, many times a second under load
    quiesce_after_ms: int = 500


LAGGING_FOLLOWER_TAILS = 8
"""Up to this many log tails are kept in memory for a live follower behind;
a follower further behind gets a snapshot (memory per room stays bounded)."""


class RoomReplica:
    """A room's replicated log on one node.

    Args:
        room: the room name.
        self_id: this node's id.
        replicas: every replica of the room in placement order, self included.
        record: the stored state to resume from, or None for a new replica.
        now_ms: the current time.
        timing: protocol timers.
        rng: source of election jitter (seeded in simulations).
        up: the nodes the failure detector sees up (default: every replica).
    """

    # slots, and shared empty sets where most replicas hold nothing: a node
    # holds tens of thousands of replicas, most of them idle followers
    __slots__ = (
        "_acked_ms",
        "_acked_round",
        "_dirty_peers",
        "_election_due_ms",
        "_epoch_index",
        "_heard_ms",
        "_initial",
        "_last_sent_ms",
        "_now_ms",
        "_outcomes",
        "_proposed_ms",
        "_quiet_peers_up",
        "_read_answers",
        "_reads",
        "_resting",
        "_retire_due_ms",
        "_rng",
        "_taken_index",
        "_told",
        "_transfer_due_ms",
        "_up",
        "_vote_out",
        "_votes",
        "_write",
        "administrator",
        "base",
        "commit_index",
        "config_floor",
        "draining",
        "epoch",
        "learners",
        "leavers",
        "leaving",
        "log",
        "match_index",
        "move",
        "next_index",
        "offset",
        "offset_epoch",
        "peers",
        "persisted_index",
        "quiet",
        "read_round",
        "replicas",
        "role",
        "room",
        "self_id",
        "snapshot_index",
        "timing",
        "tip",
        "transfer_target",
        "voted_for",
    )

    def __init__(
        self,
        room: str,
        self_id: str,
        replicas: list[str],
        record: RoomRecord | None,
        now_ms: int,
        timing: Timing | None = None,
        rng: random.Random | None = None,
        up: set[str] | None = None,
    ) -> None:
        self.room = room
        self.self_id = self_id
        self.role = Role.FOLLOWER
        # the group a replica without a create entry starts with
        self._initial = shared.group(replicas)
        # voters (old and new group during a move), in placement order
        self.replicas: tuple[str, ...] = ()
        # voters other than self: whom to ask for votes
        self.peers: tuple[str, ...] = ()
        # administrator only: nodes being brought up to date to join (a
        # move's prepare), and nodes of the old group still to be told the
        # move is committed; both get appends but never count
        self.learners: set[str] | frozenset[str] = NOBODY
        self.leavers: set[str] | frozenset[str] = NOBODY
        # per-peer replication state: administrators only (until then, and
        # while one rests, the shared read-only empty table)
        self.next_index: dict[str, int] = NO_PEERS
        self.match_index: dict[str, int] = NO_PEERS
        self.move: RoomMove | None = None
        self._outcomes: tuple[MoveOutcome, ...] = ()
        # a follower the administrator told it left the group (a move), or
        # an administrator that saw the move without it commit
        self.leaving = False
        # administrator: the highest commit index each peer acknowledged
        self._told: dict[str, int] = NO_PEERS
        self._retire_due_ms = 0
        # quiescence: an idle room sends no heartbeats, and its followers run
        # no election timers while their detector sees the administrator up
        self.quiet = False
        self._quiet_peers_up: frozenset[str] = NOBODY
        self._proposed_ms = 0
        # a quiet administrator with nothing in flight lets go of its
        # per-peer tables (`rest`); the next input rebuilds them
        self._resting = False
        self.timing = timing or Timing()
        self._rng = rng or random.Random()
        hard = record.hard if record else HardState()
        self.epoch = hard.epoch
        self.voted_for = hard.voted_for
        self.config_floor = hard.config_floor
        snapshot = record.snapshot if record else None
        # the log in memory starts after `offset`: the entries up to it are
        # committed, their effect is `base`, and they live in the store
        self.offset = snapshot.index if snapshot else 0
        self.offset_epoch = snapshot.epoch if snapshot else 0
        self.base = snapshot.state.copy() if snapshot else RoomState()
        self.base.window = self.timing.dedupe
        # the index of the last snapshot in the store (or being written)
        self.snapshot_index = self.offset
        self.log: list[LogEntry] = list(record.entries) if record and record.entries else NO_ENTRIES
        # the state after the whole log (committed or not): what an
        # administrator validates new requests against
        self.tip = self._replay()
        self._apply_config()
        self.commit_index = self.offset
        self._taken_index = self.offset
        self.role = Role.FOLLOWER
        self.administrator = ""
        self.persisted_index = self.last_index
        self._dirty_peers: set[str] | frozenset[str] = NOBODY
        self._last_sent_ms: dict[str, int] = NO_PEERS
        self._acked_ms: dict[str, int] = NO_PEERS
        self._votes: set[str] | frozenset[str] = NOBODY
        self._epoch_index = 0  # index of this administrator's epoch entry
        self._write: RoomWrite | None = None
        self._heard_ms = now_ms
        self._now_ms = now_ms  # the latest time an input brought
        self._election_due_ms = now_ms + self._jitter()
        # what the failure detector sees up (the engine's view, shared)
        self._up: set[str] = up if up is not None else set(replicas)
        self._vote_out: peer_pb.RoomVote | None = None
        # leadership transfer: the peer this administrator hands the room to
        self.transfer_target = ""
        self._transfer_due_ms = 0
        # a draining node: never campaigns, never takes a room over
        self.draining = False
        # read-index: a read waits for a majority to acknowledge this reign
        # in an append sent after the read arrived
        self.read_round = 0
        self._acked_round: dict[str, int] = NO_PEERS
        self._reads: tuple[_Read, ...] = ()
        self._read_answers: tuple[ReadAnswer, ...] = ()

    def groups(self) -> list[tuple[str, ...]]:
        """The groups whose majorities must agree: the room's group, and
        during a move (joint consensus) the group it moves to as well.

        The latest group entry in the log counts, committed or not (Raft's
        rule for configuration changes); a truncation that removes one
        brings the one before back.
        """
        old = self.tip.replicas or self._initial
        return [old, self.tip.joining] if self.tip.joining else [old]

    def _apply_config(self) -> None:
        """Follow the log's groups: voters, peers, and the administrator's
        replication targets."""
        before = set(self.replicas)
        voters: list[str] = []
        for members in self.groups():
            voters.extend(r for r in members if r not in voters)
        if tuple(voters) == self.replicas:
            return
        self.replicas = shared.group(voters)
        self.peers = shared.group(r for r in voters if r != self.self_id)
        if self.role is Role.ADMINISTRATOR:
            # old voters keep getting appends until they know they left
            self.leavers |= (before - set(voters)) - {self.self_id}
            self.learners -= set(voters)
            self.leavers -= set(voters)
        if self.role is not Role.ADMINISTRATOR:
            return  # (a reign starts replication state afresh: _take_reign)
        for peer in self.targets:
            self.next_index.setdefault(peer, self.last_index + 1)
            self.match_index.setdefault(peer, 0)

    @property
    def targets(self) -> tuple[str, ...]:
        """Every node this administrator sends appends to."""
        if not self.learners and not self.leavers:
            return self.peers  # the common case, on every proposal
        extra = sorted((self.learners | self.leavers) - set(self.peers) - {self.self_id})
        return (*self.peers, *extra)

    def _has_quorum(self, nodes: set[str] | frozenset[str]) -> bool:
        """True when nodes hold a majority of every group (both, in a move)."""
        return all(sum(1 for r in g if r in nodes) > len(g) // 2 for g in self.groups())

    def _quorum_value(self, value_of: dict[str, int]) -> int:
        """The highest value a majority of every group has reached."""
        result: int | None = None
        for group in self.groups():
            values = sorted((value_of.get(r, 0) for r in group), reverse=True)
            reached = values[len(group) // 2]
            result = reached if result is None else min(result, reached)
        return result or 0

    # ------------------------------------------------------------------ log

    @property
    def last_index(self) -> int:
        """Index of the last entry (0 for an empty log)."""
        return self.offset + len(self.log)

    @property
    def last_epoch(self) -> int:
        """Epoch of the last entry (0 for an empty log)."""
        return self.log[-1].epoch if self.log else self.offset_epoch

    def entry(self, index: int) -> LogEntry:
        """The entry at index, which must be in memory (above `offset`)."""
        if index <= self.offset:
            raise IndexError(f"{self.room}: entry {index} is compacted (offset {self.offset})")
        return self.log[index - self.offset - 1]

    def epoch_at(self, index: int) -> int:
        """Epoch of the entry at index (at least `offset`); 0 for index 0."""
        if index > self.offset:
            return self.log[index - self.offset - 1].epoch
        if index == self.offset:
            return self.offset_epoch
        raise IndexError(f"{self.room}: entry {index} is compacted (offset {self.offset})")

    def _replay(self) -> RoomState:
        """The state after `base` and every entry in memory (`base` itself
        when there are none: tip and base are one object until the next
        entry, which `_append_local` applies to a copy)."""
        if not self.log:
            return self.base
        state = self.base.copy()
        for entry in self.log:
            state.apply(entry)
        return state

    @property
    def incarnation(self) -> str:
        """The room's incarnation ("" before the create entry arrives)."""
        return self.tip.incarnation

    def _foreign(self, incarnation: str) -> bool:
        return bool(incarnation and self.tip.incarnation and incarnation != self.tip.incarnation)

    @property
    def removed(self) -> bool:
        """True when this replica is done with the room and may be dropped:
        a committed group without this node, or a committed delete."""
        if self.tip.deleted_index and self.commit_index >= self.tip.deleted_index:
            if self.role is not Role.ADMINISTRATOR:
                return True
            return all(self._told.get(p, 0) >= self.tip.deleted_index for p in self.targets)
        if self.role is not Role.FOLLOWER or not self.leaving:
            return False
        # only on the administrator's word: a learner, too, is outside the
        # group its log names so far (stragglers: `coordination.superseded`)
        return self.self_id not in self.replicas and self.commit_index >= self.tip.config_index

    @property
    def serving(self) -> bool:
        """True when this administrator has committed an entry of its epoch.

        Only then does its committed prefix include everything any earlier
        administrator acknowledged, so only then may it answer requests.
        """
        return (
            self.role is Role.ADMINISTRATOR
            and self._epoch_index > 0
            and self.commit_index >= self._epoch_index
            and not self.transfer_target
            and self.self_id in self.replicas
        )

    @property
    def committed_seq(self) -> int:
        """The seq of the last committed entry (-1 when none)."""
        if self.commit_index > self.offset:
            return self.entry(self.commit_index).seq
        # (an epoch entry repeats the visible seq before it, as base does)
        return self.base.last_seq if self.offset else -1

    def _jitter(self) -> int:
        return self._rng.randrange(self.timing.election_min_ms, self.timing.election_max_ms)

    def _persist_hard(self) -> None:
        write = self._pending_write()
        write.hard = HardState(self.epoch, self.voted_for, self.config_floor)

    def made_from(self, config_index: int) -> None:
        """This copy is being made from an administrator's log whose current
        group entry is at config_index: the older groups its log replays on
        the way (which may name this node, if it left the room before) are
        history, so it takes no part in elections until it holds that entry.
        Durable, like a vote: a restart must not forget it."""
        self.config_floor = config_index
        self._persist_hard()

    @property
    def electable(self) -> bool:
        """True once this copy's log holds the group it was made under."""
        return self.tip.config_index >= self.config_floor

    def discard_stored(self) -> None:
        """Make the next write replace whatever the store holds of the room."""
        self._pending_write().drop = True

    def _pending_write(self) -> RoomWrite:
        if self._write is None:
            self._write = RoomWrite(self.room, entries=[])
        return self._write

    def _append_local(self, entries: list[LogEntry]) -> None:
        write = self._pending_write()
        assert isinstance(write.entries, list)
        write.entries.extend(entries)
        if self.log is NO_ENTRIES:
            self.log = []
        self.log.extend(entries)
        if self.tip is self.base:
            self.tip = self.base.copy()
        for entry in entries:
            self.tip.apply(entry)
            if self.tip.config_index == entry.index:
                self._apply_config()

    def _truncate(self, from_index: int) -> None:
        if from_index <= self.commit_index:
            raise AssertionError(
                f"{self.room}: truncating committed entry {from_index} <= {self.commit_index}"
            )
        write = self._pending_write()
        assert isinstance(write.entries, list)
        # entries of this same batch at or after the cut are gone too
        write.entries = [e for e in write.entries if e.index < from_index]
        if write.truncate_from is None or from_index < write.truncate_from:
            write.truncate_from = from_index
        del self.log[from_index - self.offset - 1 :]
        self.persisted_index = min(self.persisted_index, from_index - 1)
        self.tip = self._replay()
        self._apply_config()

    # -------------------------------------------------------------- effects

    @property
    def has_effects(self) -> bool:
        """True when the next Ready would take something from this replica
        (besides a change of role or of quiet, which the engine sees)."""
        return (
            self._write is not None
            or self._vote_out is not None
            or (self.role is Role.ADMINISTRATOR and bool(self._dirty_peers))
            or bool(self._read_answers)
            or bool(self._outcomes)
            or self._taken_index < self.commit_index
        )

    @property
    def has_write(self) -> bool:
        """True when take_write() would return something."""
        return self._write is not None

    def take_write(self) -> RoomWrite | None:
        """Durable changes made since the last call, or None."""
        write, self._write = self._write, None
        return write

    def on_persisted(self, index: int) -> None:
        """The store now durably holds this replica's log up to index."""
        if index > self.persisted_index and index <= self.last_index:
            self.persisted_index = index
            if self.role is Role.ADMINISTRATOR:
                self._advance_commit()
                self.drive_move(self._now_ms)

    def take_committed(self) -> list[LogEntry]:
        """Entries committed since the last call, in log order."""
        if self._taken_index >= self.commit_index:
            return []
        start, self._taken_index = self._taken_index, self.commit_index
        return self.log[start - self.offset : self.commit_index - self.offset]

    def compact(self) -> None:
        """Keep about `log_tail` committed entries in memory: fold older
        ones into `base` (they stay in the store), and store a snapshot
        every `snapshot_every` entries so a restart starts from there.

        Only entries already durable here and handed out as committed
        (`take_committed`) are folded.
        """
        if self.quiet and self.log:
            # an idle room keeps no tail: every replica holds all of it, and
            # memory per room is what tens of thousands of idle rooms cost
            self._fold(min(self._taken_index, self.persisted_index))
            return
        tail = self.timing.log_tail
        if len(self.log) <= 2 * tail:
            return
        upto = min(self._taken_index, self.persisted_index) - tail
        if len(self.log) <= LAGGING_FOLLOWER_TAILS * tail:
            # A follower that is up but a little behind (a busy core, a
            # batch in flight) would otherwise be sent a snapshot, the
            # history before it and the whole de-duplication window instead
            # of the entries it lacks, and fall further behind doing so.
            upto = min(upto, self._slowest_live_match())
        self._fold(upto)
        every = self.timing.snapshot_every
        if len(self.base.dedupe) > self.timing.cheap_snapshot_ids:
            # A snapshot holds the de-duplication window (up to 100,000 ids
            # in a busy room, most of its cost): taken no more often than the
            # window turns over, it costs about one id per entry.
            every = max(every, len(self.base.dedupe))
        if self.offset - self.snapshot_index >= every:
            self._store_snapshot()

    def _slowest_live_match(self) -> int:
        """The lowest index a follower the detector sees up is known to
        hold (no bound when none is up, or on a follower)."""
        if self.role is not Role.ADMINISTRATOR:
            return self.last_index
        live = [self.match_index.get(p, 0) for p in self.next_index if p in self._up]
        return min(live, default=self.last_index)

    def retain(self, upto: int) -> None:
        """Retention will delete the stored entries up to `upto`: fold them
        (as far as they are durable and handed out) and store a snapshot at
        the offset, which the store's deletes may not pass."""
        self._fold(min(upto, self._taken_index, self.persisted_index))
        if self.offset > self.snapshot_index:
            self._store_snapshot()

    def _fold(self, upto: int) -> None:
        if upto <= self.offset:
            return
        folded = upto - self.offset
        for entry in self.log[:folded]:
            self.base.apply(entry)
        self.offset_epoch = self.log[folded - 1].epoch
        del self.log[:folded]
        self.offset = upto
        if not self.log:
            self.log = NO_ENTRIES
            self.tip = self.base  # the same state: one object (see _replay)

    def _store_snapshot(self) -> None:
        self.snapshot_index = self.offset
        self._pending_write().snapshot = Snapshot(self.offset, self.offset_epoch, self.base.copy())

    def snapshot_for(self, peer: str) -> peer_pb.RoomSnapshot:
        """The snapshot a peer behind `offset` is sent instead of entries."""
        return peer_pb.RoomSnapshot(
            room=self.room,
            epoch=self.epoch,
            index=self.offset,
            index_epoch=self.offset_epoch,
            state=self.base.to_json(),
            commit_index=self.commit_index,
            incarnation=self.tip.incarnation,
            members=[*self.replicas, *sorted(self.learners)],
            config_index=self.tip.config_index,
            # what the peer is known to hold: the history copied ahead of the
            # snapshot starts after it
            have_index=min(self.match_index.get(peer, 0), self.offset),
        )

    @property
    def dirty_peers(self) -> Set[str]:
        """Peers this administrator has new entries or a new commit index for."""
        return self._dirty_peers if self.role is Role.ADMINISTRATOR else NOBODY

    def _mark(self, peers: Iterable[str]) -> None:
        """The next Ready sends these peers an append."""
        if isinstance(self._dirty_peers, frozenset):
            self._dirty_peers = set(peers)
        else:
            self._dirty_peers.update(peers)

    def append_for(
        self,
        peer: str,
        now_ms: int,
        encoded: dict[tuple[int, int], list[peer_pb.LogEntry]] | None = None,
    ) -> peer_pb.RoomAppend | peer_pb.RoomSnapshot | None:
        """The next append (entries from the peer's next index) for a peer,
        or the snapshot at `offset` when the entries it needs are compacted.

        Pipelined: the peer's next index moves past what is sent at once, so
        the next call sends what comes after without waiting for an answer.

        Args:
            encoded: entries already encoded for another peer in the same
                step, by (first, last) index: the followers of a busy room
                mostly get the same ones, and encoding was the largest part
                of an append.
        """
        if self.role is not Role.ADMINISTRATOR or peer not in self.next_index:
            return None
        if peer in self._dirty_peers:
            self._dirty_peers -= {peer}
        self._last_sent_ms[peer] = now_ms
        start = self.next_index[peer]
        if start <= self.offset:
            self.next_index[peer] = self.offset + 1
            if self.offset < self.last_index:
                self._mark((peer,))
            return self.snapshot_for(peer)
        end = min(self.last_index, start + self.timing.max_batch_entries - 1)
        prev = start - 1
        msg = peer_pb.RoomAppend(
            room=self.room,
            epoch=self.epoch,
            prev_index=prev,
            prev_epoch=self.epoch_at(prev),
            entries=self._encoded(start, end, encoded),
            commit_index=self.commit_index,
            transfer=peer == self.transfer_target and end == self.last_index,
            incarnation=self.tip.incarnation,
            leaving=peer in self.leavers and self.commit_index >= self.tip.config_index,
            quiesce=self.quiet,
        )
        if prev == 0:
            # lets a node without the room create its replica (see engine)
            msg.members.extend([*self.replicas, *sorted(self.learners)])
            msg.config_index = self.tip.config_index
        self.next_index[peer] = end + 1
        if end < self.last_index:
            self._mark((peer,))
        return msg

    def _encoded(
        self, start: int, end: int, encoded: dict[tuple[int, int], list[peer_pb.LogEntry]] | None
    ) -> list[peer_pb.LogEntry]:
        """The entries start..end as protobuf, reusing what `encoded` holds."""
        entries = None if encoded is None else encoded.get((start, end))
        if entries is None:
            entries = [
                entry_to_pb(e) for e in self.log[start - self.offset - 1 : end - self.offset]
            ]
            if encoded is not None:
                encoded[(start, end)] = entries
        return entries

    def take_vote_request(self) -> peer_pb.RoomVote | None:
        """The (pre-)vote to ask every peer for, once, after an election began."""
        vote, self._vote_out = self._vote_out, None
        return vote

    def _ask_votes(self, pre: bool = False, transfer: bool = False) -> None:
        self._vote_out = peer_pb.RoomVote(
            room=self.room,
            epoch=self.epoch + 1 if pre else self.epoch,
            last_index=self.last_index,
            last_epoch=self.last_epoch,
            pre=pre,
            transfer=transfer,
            incarnation=self.tip.incarnation,
        )

    # --------------------------------------------------------------- reads

    def request_read(self, token: int) -> None:
        """Ask to serve a read (history, members, a join's snapshot).

        Confirmed in `take_reads()` once a majority has acknowledged this
        reign in appends sent after now: only then is no newer administrator
        possible that has acknowledged writes this one has not seen.
        """
        if not self.serving:
            self._read_answers += (ReadAnswer(token, None),)
            return
        self._wake(self._now_ms)
        self.read_round += 1
        self._reads += (_Read(token, self.commit_index, self.read_round),)
        self._mark(self.targets)  # a heartbeat round now
        self._confirm_reads()

    def take_reads(self) -> list[ReadAnswer]:
        """Reads confirmed or refused since the last call."""
        answers, self._read_answers = self._read_answers, ()
        return list(answers)

    def _confirm_reads(self) -> None:
        if not self._reads:
            return
        confirmed = self._quorum_value({**self._acked_round, self.self_id: self.read_round})
        while self._reads and self._reads[0].round <= confirmed:
            read, self._reads = self._reads[0], self._reads[1:]
            self._read_answers += (ReadAnswer(read.token, read.index),)

    def _refuse_reads(self) -> None:
        self._read_answers += tuple(ReadAnswer(read.token, None) for read in self._reads)
        self._reads = ()
        if self._acked_round:
            self._acked_round = {}

    # ------------------------------------------------------ administrator

    def propose(
        self,
        kind: EntryKind,
        user: str,
        text: str,
        client_msg_id: str,
        now_ms: int,
        target: int = 0,
    ) -> LogEntry:
        """Append a new entry as administrator and return it (not yet committed).

        The caller has validated the request against `tip`.

        Raises:
            RuntimeError: when this replica is not the administrator.
        """
        if self.role is not Role.ADMINISTRATOR:
            raise RuntimeError(f"{self.room}: propose on a {self.role.value}")
        self._wake(now_ms)
        self._proposed_ms = now_ms
        visible = kind in VISIBLE_KINDS
        seq = self.tip.next_seq() if visible else max(self.tip.last_seq, 0)
        entry = LogEntry(
            index=self.last_index + 1,
            epoch=self.epoch,
            kind=kind,
            seq=seq,
            user=user,
            text=text,
            ts_ms=now_ms,
            client_msg_id=client_msg_id,
            target=target,
        )
        self._append_local([entry])
        self._mark(self.targets)
        return entry

    def handle_append_result(
        self,
        peer: str,
        sent: peer_pb.RoomAppend | peer_pb.RoomSnapshot,
        result: peer_pb.RoomAppendResult,
        now_ms: int,
        read_round: int = 0,
    ) -> None:
        """Take a follower's answer to an append this replica sent.

        Args:
            read_round: `read_round` when the append was made: the answer
                confirms the reads requested up to then.
        """
        self._now_ms = max(self._now_ms, now_ms)
        if result.epoch > self.epoch and not result.foreign:
            self._step_down(result.epoch, now_ms)
            return
        if self.role is not Role.ADMINISTRATOR or sent.epoch != self.epoch:
            return  # an answer to an older reign
        if peer not in self.next_index:
            return  # no longer replicated to (an aborted move's learner)
        deleted = self.tip.deleted_index and self.commit_index >= self.tip.deleted_index
        if result.foreign or (result.unknown and (peer in self.leavers or deleted)):
            # another incarnation there, or a node that already dropped the
            # room (it left the group, or the room is deleted): nothing more
            # to replicate to it
            self._no_longer_leaving(peer)
            if deleted and result.unknown:
                self._told[peer] = self.tip.deleted_index
            self.next_index[peer] = self.last_index + 1
            return
        if result.success and sent.commit_index > self._told.get(peer, 0):
            self._told[peer] = sent.commit_index
            if peer in self.leavers and isinstance(sent, peer_pb.RoomAppend) and sent.leaving:
                self._no_longer_leaving(peer)  # it knows it left
        self._acked_ms[peer] = now_ms
        if read_round > self._acked_round.get(peer, 0):
            self._acked_round[peer] = read_round
            self._confirm_reads()
        if result.success:
            if result.match_index > self.match_index.get(peer, 0):
                self.match_index[peer] = result.match_index
                self._advance_commit()
            if self.next_index[peer] <= result.match_index:
                self.next_index[peer] = result.match_index + 1
        else:
            # the follower's log diverges or is short: resend from its hint
            retry = max(1, min(result.retry_index, self.last_index + 1))
            self.next_index[peer] = min(self.next_index[peer], retry)
            self.match_index[peer] = min(self.match_index.get(peer, 0), retry - 1)
            self._mark((peer,))
        self.drive_move(now_ms)

    def _no_longer_leaving(self, peer: str) -> None:
        if peer in self.leavers:
            self.leavers = self.leavers - {peer}

    def heartbeat(self) -> None:
        """Send every peer an append (or heartbeat) with the next Ready."""
        self._wake(self._now_ms)
        self._mark(self.targets)

    # ---------------------------------------------------------- quiescence

    def _wake(self, now_ms: int) -> None:
        """Leave quiescence: heartbeats (and their acknowledgements) resume."""
        if not self.quiet:
            return
        self.resume()
        self.quiet = False
        if self.role is Role.ADMINISTRATOR:
            # the peers were silent because nothing was sent: not cut off
            self._acked_ms = {p: max(self._acked_ms.get(p, 0), now_ms) for p in self.peers}
            self._mark(self.targets)

    def rest(self) -> bool:
        """A quiet administrator with nothing in flight (the engine knows
        that) lets go of its per-peer tables: a node administers thousands of
        idle rooms, and the tables are most of what one costs. The next input
        rebuilds them (`resume`, which the engine calls before any input but
        a tick: a quiet room's tick rebuilds them only if it wakes). Returns
        True when it rests."""
        if not (
            self.quiet
            and self.role is Role.ADMINISTRATOR
            and not self._resting
            and not self._dirty_peers
            and not self._reads
            and not self._read_answers
            and not self._outcomes
            and self._write is None
            and self.move is None
            and not self.learners
            and not self.leavers
            and not self.transfer_target
            and not self.tip.deleted_index
        ):
            return self._resting
        self._resting = True
        self._drop_tables()
        return True

    def _drop_tables(self) -> None:
        self.next_index = self.match_index = self._told = NO_PEERS
        self._acked_ms = self._last_sent_ms = self._acked_round = NO_PEERS
        self._dirty_peers = NOBODY

    def resume(self) -> None:
        """Rebuild a resting administrator's tables as they stood when it
        went quiet: every follower then up held the whole log and knew it
        committed (`_may_quiesce`); of the others nothing is assumed, which
        only makes the next heartbeat round tell them more."""
        if not self._resting:
            return
        self._resting = False
        last = self.last_index
        held = self._quiet_peers_up
        self.next_index = {p: last + 1 for p in self.peers}
        self.match_index = {p: last if p in held else 0 for p in self.peers}
        self._told = {p: last for p in self.peers if p in held}
        # as `_wake` would: silence while quiet is not being cut off
        self._acked_ms = {p: self._now_ms for p in self.peers}
        self._last_sent_ms, self._acked_round = {}, {}

    def _may_quiesce(self, up: set[str]) -> bool:
        """An administrator's room is idle, and every follower the detector
        sees up (a majority with this node) holds all of it and knows it is
        committed.

        A peer that is down does not keep the room awake: with a node gone,
        every room it was in would otherwise heartbeat forever, and a node
        holding tens of thousands of rooms would do nothing else. When the
        peer comes back, the change of view wakes the room, and a heartbeat
        round brings it up to date.
        """
        last = self.last_index
        live = {p for p in self.peers if p in up}
        return (
            self.serving
            and self.move is None
            and not self.learners
            and not self.leavers
            and not self._reads
            and not self.tip.joining
            and self.commit_index == last
            and self.persisted_index == last
            and all(
                self.match_index.get(p, 0) == last and self._told.get(p, 0) >= last for p in live
            )
            and self._has_quorum(live | {self.self_id})
        )

    def append_failed(self, peer: str, sent: peer_pb.RoomAppend | peer_pb.RoomSnapshot) -> None:
        """An append was lost (RPC error): resend its entries next time."""
        if self.role is Role.ADMINISTRATOR and sent.epoch == self.epoch:
            first = sent.prev_index + 1 if isinstance(sent, peer_pb.RoomAppend) else 1
            if self.next_index.get(peer, 0) > first:
                self.next_index[peer] = max(first, self.match_index.get(peer, 0) + 1)
            if peer not in self._up:
                # nothing to say to a peer the detector sees down (a dead
                # node's thousands of rooms would retry it forever): its
                # return, a change of view, brings a heartbeat round
                return
            self._mark((peer,))

    def _advance_commit(self) -> None:
        candidate = self._quorum_value({**self.match_index, self.self_id: self.persisted_index})
        # Raft's rule (the "Figure 8" case): count replicas only for entries
        # of the current epoch; earlier ones commit with them.
        if candidate > self.commit_index and self.epoch_at(candidate) == self.epoch:
            # Followers learn it with the next append, or at the next tick
            # when none comes: an append just for the commit index doubled
            # the RPCs per message and took CPU from the answer to the
            # client at the moment it was due (nothing a follower does needs
            # the commit index sooner).
            self.commit_index = candidate

    def found(
        self, user: str, incarnation: str, now_ms: int, options: RoomOptions = PUBLIC
    ) -> LogEntry:
        """Start a new room here: this empty replica becomes its first
        administrator and appends the create entry, which names the group.

        No election: nobody else holds the room, and an empty copy may not
        vote. A second founder of the same name (two creates racing on
        different nodes) is told apart by its incarnation: a replica follows
        only the first incarnation it holds, so at most one create commits.
        """
        if self.last_index:
            raise RuntimeError(f"{self.room}: found on a replica that has a log")
        self.epoch += 1
        self.voted_for = self.self_id
        self._persist_hard()
        self._take_reign(now_ms)
        text = create_text(self.replicas, options)
        entry = self.propose(EntryKind.CREATE, user, text, incarnation, now_ms)
        self._epoch_index = entry.index
        return entry

    # --------------------------------------------------------------- moves

    def begin_move(self, target: list[str] | tuple[str, ...], now_ms: int) -> bool:
        """Coordinate moving the room to `target` (placement order).

        Returns:
            False when no move starts: not serving, a move already under
            way, or the room already on that group.
        """
        target = tuple(target)
        if (
            not self.serving
            or self.move is not None
            or self.tip.joining
            or not target
            or same_group(target, self.tip.replicas or self._initial)
            or not self.tip.exists
        ):
            return False
        self._wake(now_ms)
        self.move = RoomMove(target, now_ms, now_ms + PREPARE_TIMEOUT_MS)
        self.move.learners = set(target) - set(self.replicas)
        self.learners = set(self.move.learners)
        for peer in self.learners:
            # from the start: the learner may have nothing (or a stale copy)
            self.next_index[peer] = 1
            self.match_index[peer] = 0
            self._mark((peer,))
        self.drive_move(now_ms)
        return True

    def drive_move(self, now_ms: int) -> None:
        """Take the move one step further, if it can go on (administrator)."""
        move = self.move
        if self.role is not Role.ADMINISTRATOR:
            return
        if move is None:
            if self.tip.joining and self.serving:
                self.move = RoomMove(self.tip.joining, now_ms, now_ms + PREPARE_TIMEOUT_MS)
                self.move.joint_proposed = True
                self.drive_move(now_ms)
            elif (
                self._left_committed()
                and not self.transfer_target
                and self._epoch_index
                and self.commit_index >= self._epoch_index
            ):
                # elected to finish a move that removed this node: once the
                # new group holds it, hand the room over
                self.leaving = True
                self.transfer(now_ms, self._up)
            return
        if not move.joint_proposed:
            if now_ms >= move.deadline_ms:
                self._end_move("aborted", now_ms)
                return
            behind = [p for p in move.learners if self.match_index.get(p, 0) < self.commit_index]
            if behind or not self.serving:
                return
            # every learner holds everything committed: they voted yes
            move.joint_proposed = True
            self.propose(EntryKind.MOVE_JOINT, self.self_id, ",".join(move.target), "", now_ms)
            self._outcomes += (
                MoveOutcome(self.room, "prepared", now_ms - move.started_ms, move.target),
            )
            return
        if not move.done_proposed:
            if not self.tip.joining:
                # the joint entry was lost (truncated under a new reign): abort
                self._end_move("aborted", now_ms)
                return
            if self.commit_index >= self.tip.config_index:
                move.done_proposed = True
                self.propose(
                    EntryKind.MOVE_DONE, self.self_id, ",".join(self.tip.joining), "", now_ms
                )
            return
        if not self.tip.joining and self.commit_index >= self.tip.config_index:
            self._end_move("committed", now_ms)
            if self._left_committed():
                self.leaving = True  # it saw the commit: drop once handed over
            if self._left_committed() and not self.transfer_target:
                # the new group goes on without this node: hand it over
                self.transfer(now_ms, self._up)

    def _left_committed(self) -> bool:
        return self.self_id not in self.replicas and self.commit_index >= self.tip.config_index

    def _end_move(self, outcome: str, now_ms: int, unless_joint: bool = False) -> None:
        move = self.move
        if move is None or (unless_joint and move.joint_proposed):
            return
        self.move = None
        if outcome == "aborted":
            for learner in move.learners - set(self.replicas):
                self.learners = self.learners - {learner}
                self.next_index.pop(learner, None)
                self.match_index.pop(learner, None)
        self._outcomes += (
            MoveOutcome(self.room, outcome, max(0, now_ms - move.started_ms), move.target),
        )

    def take_moves(self) -> list[MoveOutcome]:
        """Moves this replica coordinated that ended since the last call."""
        outcomes, self._outcomes = self._outcomes, ()
        return list(outcomes)

    # ------------------------------------------------------------ follower

    def handle_append(
        self, sender: str, msg: peer_pb.RoomAppend, now_ms: int
    ) -> peer_pb.RoomAppendResult:
        """Take an administrator's append; the answer may be sent once
        `take_write()` is durable."""
        if self._foreign(msg.incarnation):
            # (epoch 0: this replica's epochs are another room's business)
            return peer_pb.RoomAppendResult(room=self.room, success=False, foreign=True)
        if msg.epoch < self.epoch:
            return peer_pb.RoomAppendResult(room=self.room, epoch=self.epoch, success=False)
        self.leaving = msg.leaving
        if msg.epoch > self.epoch or self.role is not Role.FOLLOWER:
            self._become_follower(msg.epoch, now_ms)
        self.quiet = msg.quiesce
        self.administrator = sender
        self._heard(now_ms)
        if msg.prev_index > self.last_index:
            return self._reject(self.last_index + 1)
        # (entries up to offset are committed here, so they match)
        if msg.prev_index >= self.offset and self.epoch_at(msg.prev_index) != msg.prev_epoch:
            # skip back over the whole conflicting epoch at once
            conflict_epoch = self.epoch_at(msg.prev_index)
            first = msg.prev_index
            while first > self.commit_index + 1 and self.epoch_at(first - 1) == conflict_epoch:
                first -= 1
            return self._reject(first)
        new: list[LogEntry] = []
        for pb_entry in msg.entries:
            index = pb_entry.index
            if index <= self.offset:
                continue
            if index <= self.last_index:
                if self.epoch_at(index) == pb_entry.epoch:
                    continue
                self._truncate(index)
            new.append(entry_from_pb(pb_entry))
        if new:
            self._append_local(new)
        match = msg.prev_index + len(msg.entries)
        commit = min(msg.commit_index, match)
        if commit > self.commit_index:
            self.commit_index = commit
        result = peer_pb.RoomAppendResult(
            room=self.room, epoch=self.epoch, success=True, match_index=match
        )
        if msg.transfer and match == self.last_index and not self.draining:
            # the administrator hands over and this log holds all of its:
            # campaign now, without waiting for its reign to time out
            self.campaign(now_ms, transfer=True)
        return result

    def handle_snapshot(
        self, sender: str, msg: peer_pb.RoomSnapshot, now_ms: int
    ) -> peer_pb.RoomAppendResult:
        """Take an administrator's snapshot (Raft's InstallSnapshot): the
        room's state at an index this log does not hold, or not committed.
        The answer, like an append's, may be sent once `take_write()` is
        durable."""
        if self._foreign(msg.incarnation):
            return peer_pb.RoomAppendResult(room=self.room, success=False, foreign=True)
        if msg.epoch < self.epoch:
            return peer_pb.RoomAppendResult(room=self.room, epoch=self.epoch, success=False)
        self.leaving = False
        if msg.epoch > self.epoch or self.role is not Role.FOLLOWER:
            self._become_follower(msg.epoch, now_ms)
        self.quiet = False
        self.administrator = sender
        self._heard(now_ms)
        index = msg.index
        ok = peer_pb.RoomAppendResult(
            room=self.room, epoch=self.epoch, success=True, match_index=index
        )
        if index <= self.commit_index:
            return ok  # this log holds it committed already
        if msg.have_index > self.last_index:
            # the history sent ahead starts after entries this copy does not
            # hold (it lost them with its disk): ask again from what it has
            return self._reject(self.commit_index + 1)
        state = RoomState.from_json(msg.state, self.timing.dedupe)
        write = self._pending_write()
        assert isinstance(write.entries, list)
        # Raft's rule: entries after the snapshot's last stay if this log
        # agrees with it there (they may be acknowledged); otherwise what
        # follows the entries known to match (committed here, or
        # acknowledged to this administrator: the history sent ahead starts
        # after those) goes, and the staged history stands in up to index
        keep = index < self.last_index and self.epoch_at(index) == msg.index_epoch
        # entries of this batch not yet durable, up to index, are in the
        # staged history (this node acknowledged none of them, so they come
        # after have_index); the store writes them after the snapshot, where
        # they no longer fit
        if keep:
            del self.log[: index - self.offset]
            write.entries = [e for e in write.entries if e.index > index]
        else:
            cut = max(self.commit_index, min(msg.have_index, self.last_index)) + 1
            write.entries = []
            if write.truncate_from is None or cut < write.truncate_from:
                write.truncate_from = cut
            self.log = NO_ENTRIES
            self.persisted_index = min(self.persisted_index, cut - 1)
        self.offset, self.offset_epoch = index, msg.index_epoch
        self.base = state
        self.snapshot_index = index
        write.snapshot = Snapshot(index, msg.index_epoch, state.copy())
        write.install = True
        self.tip = self._replay()
        self._apply_config()
        # (only up to index: entries kept after it may not match further on)
        self.commit_index = max(self.commit_index, index)
        # (what the snapshot covers was applied elsewhere; nothing to hand out)
        self._taken_index = max(self._taken_index, index)
        return ok

    def _reject(self, retry_index: int) -> peer_pb.RoomAppendResult:
        return peer_pb.RoomAppendResult(
            room=self.room, epoch=self.epoch, success=False, retry_index=max(1, retry_index)
        )

    def handle_vote(
        self, candidate: str, msg: peer_pb.RoomVote, now_ms: int
    ) -> peer_pb.RoomVoteResult:
        """Take a vote request; a granted vote may be sent once
        `take_write()` is durable."""
        if self._foreign(msg.incarnation) or not self.electable:
            # another room of that name, or a copy still being made from
            # another's log (Raft has voters outside their own latest group
            # vote too: a move's old members may be needed until the new
            # group is committed)
            return peer_pb.RoomVoteResult(
                room=self.room, epoch=self.epoch, granted=False, pre=msg.pre
            )
        if not msg.transfer and self._administrator_alive(candidate, now_ms):
            # a live administrator: a candidate that thinks otherwise (a node
            # back from a pause or a partition) must not disrupt the room
            return peer_pb.RoomVoteResult(
                room=self.room, epoch=self.epoch, granted=False, pre=msg.pre
            )
        if msg.pre:
            # would vote: changes nothing here, so it needs nothing durable
            up_to_date = (msg.last_epoch, msg.last_index) >= (self.last_epoch, self.last_index)
            granted = msg.epoch > self.epoch and up_to_date
            epoch = msg.epoch if granted else self.epoch
            return peer_pb.RoomVoteResult(room=self.room, epoch=epoch, granted=granted, pre=True)
        if msg.epoch > self.epoch:
            self._become_follower(msg.epoch, now_ms, heard=False)
        granted = False
        if msg.epoch == self.epoch and self.voted_for in ("", candidate):
            up_to_date = (msg.last_epoch, msg.last_index) >= (self.last_epoch, self.last_index)
            if up_to_date:
                granted = True
                if self.voted_for != candidate:
                    self.voted_for = candidate
                    self._persist_hard()
                self._heard(now_ms)
        return peer_pb.RoomVoteResult(room=self.room, epoch=self.epoch, granted=granted)

    def _administrator_alive(self, candidate: str, now_ms: int) -> bool:
        if self.role is Role.ADMINISTRATOR:
            if self.quiet:
                return True  # idle, and nobody has been seen to leave
            recent = {
                p
                for p in self.peers
                if now_ms - self._acked_ms.get(p, 0) < self.timing.election_min_ms
            }
            return self._has_quorum(recent | {self.self_id})
        return (
            self.role is Role.FOLLOWER
            and self.administrator not in ("", candidate)
            and self.administrator in self._up
            and (self.quiet or now_ms - self._heard_ms < self.timing.election_min_ms)
        )

    # ------------------------------------------------------------ elections

    def pre_vote(self, now_ms: int) -> None:
        """Ask the peers whether they would elect this replica, changing nothing.

        Only a majority's yes starts the real campaign (`campaign`): a node
        that was cut off cannot raise the room's epoch, and so cannot depose
        an administrator the others still hear from.
        """
        self.role = Role.PRE_CANDIDATE
        self.administrator = ""
        self._votes = {self.self_id}
        campaign = self.timing.campaign_ms
        self._election_due_ms = now_ms + campaign + self._rng.randrange(0, campaign)
        if self._has_quorum(self._votes):
            self.campaign(now_ms)
            return
        self._ask_votes(pre=True)

    def campaign(self, now_ms: int, transfer: bool = False) -> bool:
        """Start an election for the next epoch.

        Returns:
            True when this replica became administrator at once (a group of
            one); otherwise `take_vote_request()` has the vote to ask for.
        """
        self.role = Role.CANDIDATE
        self.epoch += 1
        self.voted_for = self.self_id
        self.administrator = ""
        self._persist_hard()
        self._votes = {self.self_id}
        # retry soon (with jitter so two candidates do not keep splitting
        # the vote) if no majority answers
        campaign = self.timing.campaign_ms
        self._election_due_ms = now_ms + campaign + self._rng.randrange(0, campaign)
        if self._has_quorum(self._votes):
            self._become_administrator(now_ms)
            return True
        self._ask_votes(transfer=transfer)
        return False

    def handle_vote_result(self, voter: str, result: peer_pb.RoomVoteResult, now_ms: int) -> bool:
        """Take a peer's answer to a (pre-)vote. Returns True when this replica
        just won the election."""
        if result.pre:
            if result.granted:
                if self.role is Role.PRE_CANDIDATE and result.epoch == self.epoch + 1:
                    self._votes = self._votes | {voter}
                    if self._has_quorum(self._votes):
                        return self.campaign(now_ms)
            elif result.epoch > self.epoch:
                self._step_down(result.epoch, now_ms)
            return False
        if result.epoch > self.epoch:
            self._step_down(result.epoch, now_ms)
            return False
        # a granted vote carries the epoch it was asked for: this campaign's
        if self.role is not Role.CANDIDATE or result.epoch != self.epoch or not result.granted:
            return False
        self._votes = self._votes | {voter}
        if self._has_quorum(self._votes):
            self._become_administrator(now_ms)
            return True
        return False

    def _take_reign(self, now_ms: int) -> None:
        """Start administering: fresh replication state for every peer
        (founding a room, or winning an election)."""
        self.role = Role.ADMINISTRATOR
        self.administrator = self.self_id
        self.learners, self.leavers, self._told = NOBODY, NOBODY, {}
        self.next_index = {p: self.last_index + 1 for p in self.peers}
        self.match_index = {p: 0 for p in self.peers}
        self._acked_ms = {p: now_ms for p in self.peers}
        self._last_sent_ms, self._acked_round = {}, {}
        self._vote_out = None
        self._dirty_peers = set(self.peers)

    def _become_administrator(self, now_ms: int) -> None:
        self._take_reign(now_ms)
        if self.tip.joining:
            # a move its coordinator did not finish: this reign finishes it
            self.move = RoomMove(
                self.tip.joining, now_ms, now_ms + PREPARE_TIMEOUT_MS, joint_proposed=True
            )
        # an entry of its own epoch: committing it commits every earlier
        # entry, which is what makes the new administrator safe to serve
        self._epoch_index = self.propose(EntryKind.EPOCH, self.self_id, "", "", now_ms).index

    def _become_follower(self, epoch: int, now_ms: int, heard: bool = True) -> None:
        if epoch > self.epoch:
            self.epoch = epoch
            self.voted_for = ""
            self._persist_hard()
        if self.role is Role.ADMINISTRATOR:
            self._refuse_reads()
            # before the joint entry nothing changed: aborted; after it, the
            # next administrator finishes the move (and reports it)
            self._end_move("aborted", now_ms, unless_joint=True)
            self.move = None
            self.learners = NOBODY
            self.leavers = NOBODY
        self.role = Role.FOLLOWER
        self.administrator = ""
        self.quiet = False
        self._resting = False
        self._drop_tables()
        self._epoch_index = 0
        self.transfer_target = ""
        self._vote_out = None
        if heard:
            self._heard(now_ms)

    def step_down(self, now_ms: int) -> None:
        """Stop administering without a successor in hand: the others elect
        the next administrator when their detectors or timers say so."""
        if self.role is not Role.FOLLOWER:
            self._become_follower(self.epoch, now_ms)

    def transfer(self, now_ms: int, up: set[str]) -> str:
        """Hand the room to the most up-to-date peer that is up (a draining
        node), like Raft's TimeoutNow: stop taking requests, bring the target
        up to date, then tell it to campaign at once.

        Returns:
            The target, or "" when there is none (and the replica stepped
            down instead).
        """
        self.draining = True
        self._wake(now_ms)
        if self.role is not Role.ADMINISTRATOR:
            self.step_down(now_ms)
            return ""
        candidates = [p for p in self.peers if p in up and p in self.groups()[-1]]
        if not candidates:
            self.step_down(now_ms)
            return ""
        # placement order breaks ties: max keeps the first of equal matches
        target = max(candidates, key=lambda p: self.match_index.get(p, 0))
        self.transfer_target = target
        self._transfer_due_ms = now_ms + self.timing.election_min_ms
        self._refuse_reads()
        self._mark((target,))
        return target

    def _step_down(self, epoch: int, now_ms: int) -> None:
        self._become_follower(epoch, now_ms)

    def _heard(self, now_ms: int) -> None:
        self._heard_ms = now_ms
        self._election_due_ms = now_ms + self._jitter()

    def tick(self, now_ms: int, up: set[str], campaign: bool = True) -> bool:
        """Advance timers. Returns True when an election (a pre-vote) just began.

        Args:
            now_ms: the current time.
            up: nodes the failure detector sees as up (self included).
            campaign: False when the engine lets no more elections begin in
                this tick; one that is due begins at a later tick.
        """
        self._up = up
        self._now_ms = max(self._now_ms, now_ms)
        if self.quiet:
            if self.role is Role.ADMINISTRATOR:
                if up & set(self.peers) == self._quiet_peers_up:
                    return False
                self._wake(now_ms)  # a peer came or went: a heartbeat round
            elif self.administrator and self.administrator in up:
                # the detector vouches for the administrator's node: as if heard
                self._heard(now_ms)
                return False
            else:
                self.quiet = False  # its node is gone: elections as usual
        if self.role is Role.ADMINISTRATOR:
            if self.transfer_target and now_ms >= self._transfer_due_ms:
                self.step_down(now_ms)  # the target never took over: let go
                return False
            for peer in self.targets:
                if peer in up and (
                    now_ms - self._last_sent_ms.get(peer, -self.timing.heartbeat_ms)
                    >= self.timing.heartbeat_ms
                    or self._told.get(peer, 0) < self.commit_index
                ):
                    self._mark((peer,))
            # an administrator cut off from a majority steps down, so that it
            # stops claiming the room and clients move to the majority side
            recent = {
                p
                for p in self.peers
                if now_ms - self._acked_ms.get(p, 0) < self.timing.election_max_ms
            }
            if not self._has_quorum(recent | {self.self_id}) and self.commit_index:
                # (with nothing committed yet, nobody else can take over: a
                # founder keeps trying until its create is held)
                self._become_follower(self.epoch, now_ms)
                return False
            self.drive_move(now_ms)
            if now_ms - self._proposed_ms >= self.timing.quiesce_after_ms and self._may_quiesce(up):
                # one last heartbeat says so; then nothing until something happens
                self.quiet = True
                self._quiet_peers_up = shared.nodes(up & set(self.peers))
                self._mark(self.peers)
            return False
        if self.draining:
            return False
        # the cheap test first: after a node dies, the tens of thousands of
        # rooms it administered are all ticked until their elections end
        if self.role in (Role.CANDIDATE, Role.PRE_CANDIDATE):
            due = now_ms >= self._election_due_ms
        else:
            quiet_ms = now_ms - self._heard_ms
            # fast path: health says the administrator is gone (or none is
            # known) and this node is next in line. Only after a few
            # heartbeats' silence either way: a detector that wrongly reports
            # a live administrator down while its appends still arrive must
            # not make this node depose it again and again (each campaign's
            # higher epoch ends its reign)
            leaderless = quiet_ms >= 2 * self.timing.heartbeat_ms and (
                not self.administrator or self.administrator not in up
            )
            due = (leaderless and self._preferred(up)) or now_ms >= self._election_due_ms
        if not due or not campaign:
            return False
        if self.last_index == 0 or not self.electable or not self._may_campaign():
            return False  # an empty copy, or no longer needed: never a candidate
        if not self._has_quorum(up & set(self.replicas)):
            return False  # cannot win; campaigning would only inflate epochs
        self.pre_vote(now_ms)
        return True

    def _may_campaign(self) -> bool:
        """A voter may; so may a node that a move's uncommitted last step
        removed, since the new group may still need it (Raft thesis §4.2.2)."""
        if self.self_id in self.replicas:
            return True
        index = self.tip.config_index
        return index > self.commit_index and self.entry(index).kind is EntryKind.MOVE_DONE

    def _preferred(self, up: set[str]) -> bool:
        """True when this node is the first replica (placement order) that is up
        and is not the (believed) administrator."""
        for replica in self.replicas:
            if replica in up and replica != self.administrator:
                return replica == self.self_id
        return False
