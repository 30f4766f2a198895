"""The node: its room engine, driven by the Ready loop, and what serves from it.

`NodeCore` puts the parts together; each has one job:

* `parley.room.engine.RoomEngine`: every replica, pure;
* `engine_loop.EngineLoop`: persist → send → apply;
* `store_writer.StoreWriter`: the store, off the event loop;
* `commit_waiters.CommitWaiters`: publishers waiting for their commit;
* `subscribers.SubscriberHub`: Subscribe streams and their buffers;
* `presence.PresenceBook`: who is online, per administered room.

What is left here: finding or adopting a room's replica, waiting for this
node to serve it, proposals and reads, ticks, draining, and the role
bookkeeping (metrics, logs, failing what a lost reign leaves waiting).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from parley._generated import peer_service_pb2 as peer_pb
from parley._generated.peer_service_pb2 import LocateRoomResponse
from parley.cluster.placement import replicas_for
from parley.observability import metrics, tracing
from parley.observability.log import get_logger
from parley.room.engine import Outbound, Ready, RoleChange, RoomEngine
from parley.room.entries import EntryKind, LogEntry
from parley.room.errors import NotAdministrator, NotFound, RoomExists, Unavailable
from parley.room.replica import Role, RoomReplica, Timing
from parley.room.retention import Cutoffs, RetentionPolicy, cutoffs
from parley.room.state import PUBLIC, RoomOptions
from parley.room.store import LogStore

from .commit_waiters import CommitWaiters
from .engine_loop import EngineLoop, now_ms
from .notices import NoticeHub
from .presence import PresenceBook
from .store_writer import StoreWriter
from .subscribers import SubscriberHub

if TYPE_CHECKING:
    from parley.archive.postgres import PostgresArchive

log = get_logger("parley.node")

TICK_SECONDS = 0.05
READ_TIMEOUT = 2.0

__all__ = ["NodeCore", "now_ms"]


@dataclass(frozen=True, slots=True)
class Located:
    """What the other nodes said of a room (LocateRoom)."""

    # the best answer from a node holding it: a serving administrator's if any
    found: LocateRoomResponse | None
    # how many nodes did not answer
    silent: int = 0
    # the incarnation each node that holds a copy has
    incarnations: tuple[str, ...] = ()


async def _nowhere(_room: str) -> Located:
    return Located(None)


def _no_transport(_messages: list[Outbound]) -> None:
    pass


class NodeCore:
    """Every room replica of this node, and the loops that drive them.

    Args:
        node_id: this node's id.
        store: where replicas persist (called from one worker thread).
        members: the discovered node set, {node_id: address}.
        up_nodes: the failure detector's view of nodes that are up.
        replication: how many replicas each room has (R).
        timing: protocol timers.
    """

    def __init__(
        self,
        node_id: str,
        store: LogStore,
        members: Callable[[], dict[str, str]],
        up_nodes: Callable[[], set[str]],
        replication: int,
        timing: Timing | None = None,
        retention: RetentionPolicy | None = None,
        presence_limit: int = 100,
    ) -> None:
        self.node_id = node_id
        # rooms with more members than this announce no online/offline
        self.presence_limit = presence_limit
        # the default for rooms that set none at create
        self.retention = retention or RetentionPolicy()
        self.members = members
        self.up_nodes = up_nodes
        self.replication = replication
        self.timing = timing or Timing()
        self.engine = RoomEngine(node_id, self.timing)
        self.store = StoreWriter(store, node_id)
        self.store.on_damaged = self._damaged
        self.loop = EngineLoop(self.engine, self.store, self._send, self._apply)
        self.commits = CommitWaiters()
        self.hub = SubscriberHub()
        self.notices = NoticeHub()
        self.presence = PresenceBook(self._announce)
        self.administered: set[str] = set()
        # the archive database, when one is configured (node/archiver.py):
        # history older than the room logs keep is read from it, and
        # retention keeps what it has not confirmed
        self.archive: PostgresArchive | None = None
        # rooms that became administered here since the mover last looked
        self.newly_administered: set[str] = set()
        self._proposed_at: dict[tuple[str, int], float] = {}
        # (room, index) -> trace carrier of the request that proposed it
        self.carriers: dict[tuple[str, int], dict[str, str]] = {}
        self._room_watchers: dict[str, list[asyncio.Future[None]]] = {}
        self._reads: dict[int, asyncio.Future[int | None]] = {}
        self._read_token = 0
        # the peer transport: appends and vote requests leave through it
        self.transport: Callable[[list[Outbound]], None] = _no_transport
        self.locate: Callable[[str], Awaitable[Located]] = _nowhere
        self._tick_task: asyncio.Task[None] | None = None

    @property
    def rooms(self) -> dict[str, RoomReplica]:
        """This node's replicas, by room."""
        return self.engine.rooms

    @property
    def draining(self) -> bool:
        return self.engine.draining

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Load stored replicas and start the Ready and tick loops."""
        records = await self.store.load()
        now = now_ms()
        for room, record in records.items():
            if record.damaged:
                metrics.STORE_DAMAGED.inc()
                log.error("stored copy damaged; rebuilding it", room=room, why=record.damaged)
            self.engine.restore(room, self.placement(room), record, now)
        self.loop.start()
        self._tick_task = asyncio.create_task(self._tick_loop(), name="tick")
        log.info("node core started", rooms=len(self.rooms))

    async def stop(self) -> None:
        """Stop the loops, end every stream and close the store."""
        if self._tick_task is not None:
            self._tick_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tick_task
        await self.loop.stop()
        self.hub.end_all(Unavailable("node shutting down"))
        await self.store.close()

    def hand_over(self) -> None:
        """Draining: hand every administered room to an up-to-date replica
        (leadership transfer) and never campaign again."""
        self.engine.drain(now_ms(), self.up_nodes() | {self.node_id})
        self.loop.kick()

    # ------------------------------------------------------------- replicas

    def placement(self, room: str) -> list[str]:
        """The room's replicas in placement order, over the discovered nodes."""
        nodes = set(self.members()) | {self.node_id}
        return replicas_for(room, nodes, self.replication)

    def first_up(self, replicas: list[str]) -> str:
        """The first replica the failure detector sees up ("" if none)."""
        up = self.up_nodes() | {self.node_id}
        return next((r for r in replicas if r in up), "")

    async def serving_replica(self, room: str, timeout: float = 5.0) -> RoomReplica:
        """The room's replica once this node serves it as administrator.

        Waits through an election this node is running. A request for a
        room this node does not hold is redirected to a node that does, or
        answered NotFound: it leaves no replica, no log and no election
        behind (only `create_room` starts a room).

        Raises:
            NotAdministrator: another node administers (or should) the room.
            NotFound: no node holds the room.
            Unavailable: no administrator could be established in time.
        """
        replica = self.rooms.get(room)
        if replica is None:
            raise await self._elsewhere(room)
        deadline = time.monotonic() + timeout
        while not replica.serving:
            if self.draining:
                raise NotAdministrator(room, replica.transfer_target)
            if replica.transfer_target:
                raise NotAdministrator(room, replica.transfer_target)
            if replica.role is Role.FOLLOWER:
                if replica.administrator:
                    raise NotAdministrator(room, replica.administrator)
                preferred = self._preferred(replica)
                if preferred != self.node_id:
                    raise NotAdministrator(room, preferred)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Unavailable(f"no administrator for {room} yet; try again")
            await self.room_changed(room, min(remaining, 0.5))
        return replica

    async def _elsewhere(self, room: str) -> NotAdministrator | NotFound | Unavailable:
        """Where a room this node does not hold is: the error to answer with.

        The room may predate a change of the node set and live on the group
        its log records, or be moving here (this node a learner soon): ask
        the other nodes. The answer is "not found" only when no node holds
        it and none that might did stay silent.
        """
        replicas = self.placement(room)
        located = await self.locate(room)
        if located.found is not None:
            return NotAdministrator(room, self._hint(located.found))
        if located.silent:
            # a node that did not answer may hold it: not a reason to say it
            # does not exist
            return Unavailable(f"room {room}: {located.silent} node(s) did not answer; try again")
        if self.node_id not in replicas:
            return NotAdministrator(room, self.first_up(replicas))
        return NotFound(f"room {room} does not exist")

    async def create_room(self, room: str, user: str, options: RoomOptions = PUBLIC) -> LogEntry:
        """Create a room, with this node (placement's first up) founding it.

        The room must exist nowhere: every other node is asked, and a create
        goes ahead only if no node holds the room and at most quorum - 1 did
        not answer (a committed room is on at least a quorum of its group, so
        one of them answered). The create entry gets a fresh incarnation, so
        that two creates racing on different nodes cannot mix: at most one
        of them commits (see `RoomReplica.found`).

        Raises:
            NotAdministrator: another node holds the room, or should found it.
            RoomExists: the room exists here.
            Unavailable: too many nodes were silent, or the create did not
                commit in time.
        """
        replicas = self.placement(room)
        replica = self.rooms.get(room)
        if replica is not None and not self._dead_founding(replica):
            replica = await self.serving_replica(room)
            raise RoomExists(f"room {room} already exists")
        if self.node_id not in replicas:
            raise NotAdministrator(room, self.first_up(replicas))
        located = await self.locate(room)
        quorum = len(replicas) // 2 + 1
        found = located.found
        if found is not None and (found.serving or not self._none_committed(room, located, quorum)):
            raise NotAdministrator(room, self._hint(found))
        if located.silent > quorum - 1:
            raise Unavailable(
                f"room {room}: {located.silent} node(s) did not answer; cannot tell it is new"
            )
        replica = self.rooms.get(room)  # a create that raced this one here
        if replica is not None and not self._dead_founding(replica):
            raise RoomExists(f"room {room} already exists")
        entry = self.engine.found(room, replicas, user, uuid.uuid4().hex, now_ms(), options)
        future = self.commits.wait(self.rooms[room], entry.index)
        self.loop.kick()
        try:
            return await asyncio.wait_for(future, 5.0)
        except TimeoutError:
            raise Unavailable(f"room {room}: the create did not commit in time") from None

    def _hint(self, found: LocateRoomResponse) -> str:
        """Where to send a request for a room another node told about."""
        return found.administrator or self.first_up([*found.replicas, *found.joining])

    def _none_committed(self, room: str, located: Located, quorum: int) -> bool:
        """True when no incarnation of the room can have committed: for each,
        the nodes holding it (this one included) plus the silent ones are
        fewer than a quorum. Then the copies are creates that never reached
        a majority (a founder that died, twice, with one in flight) and a
        new one may be founded; the mover drops them once it is served."""
        held = Counter(located.incarnations)
        mine = self.rooms.get(room)
        if mine is not None:
            held[mine.incarnation] += 1
        return all(count + located.silent < quorum for count in held.values())

    @staticmethod
    def _dead_founding(replica: RoomReplica) -> bool:
        """A copy that a founder kept of a create that never reached anyone
        (it died before a peer had it): nothing of it is committed, it is
        not administered, and (checked by the caller) no other node has it."""
        return (
            replica.commit_index == 0
            and replica.role is not Role.ADMINISTRATOR
            and replica.epoch == 1
            and replica.voted_for == replica.self_id
        )

    def _preferred(self, replica: RoomReplica) -> str:
        up = self.up_nodes() | {self.node_id}
        for candidate in replica.replicas:
            if candidate in up and candidate != replica.administrator:
                return candidate
        return ""

    async def room_changed(self, room: str, timeout: float) -> None:
        """Wait until the room's replica changes (or timeout)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._room_watchers.setdefault(room, []).append(future)
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            pass
        finally:
            watchers = self._room_watchers.get(room)
            if watchers and future in watchers:
                watchers.remove(future)

    def _wake_watchers(self, room: str) -> None:
        watchers = self._room_watchers.pop(room, None)
        if watchers:
            for future in watchers:
                if not future.done():
                    future.set_result(None)

    # ------------------------------------------------------ writes and reads

    def retention_cut(self, replica: RoomReplica) -> Cutoffs:
        """Where the room's retention cuts its log now: with an archive, never
        after what the archive has confirmed."""
        policy = RetentionPolicy.of(replica.tip, self.retention)
        held = replica.tip.archived_seq if self.archive is not None else None
        return cutoffs(policy, replica.committed_seq, now_ms(), held)

    def propose(
        self,
        replica: RoomReplica,
        kind: EntryKind,
        user: str,
        text: str = "",
        msg_id: str = "",
        target: int = 0,
    ) -> asyncio.Future[LogEntry]:
        """Append an entry as administrator; the future resolves on commit."""
        entry = self.engine.propose(replica.room, kind, user, text, msg_id, now_ms(), target)
        self._proposed_at[(replica.room, entry.index)] = time.perf_counter()
        if tracing.enabled():
            # the replication of this entry continues the publish's trace
            self.carriers[(replica.room, entry.index)] = tracing.current_carrier()
        self.loop.kick()
        return self.commits.wait(replica, entry.index)

    def wait_commit(self, replica: RoomReplica, index: int) -> asyncio.Future[None]:
        """A future that resolves once index is committed in this reign."""
        return self.commits.barrier(replica, index)

    async def confirm_read(self, replica: RoomReplica) -> None:
        """Wait until this administrator may serve a read of the room
        (read-index: a majority still follows this reign).

        Raises:
            NotAdministrator: it is no longer the administrator.
            Unavailable: no majority answered in time.
        """
        self._read_token += 1
        token = self._read_token
        future: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._reads[token] = future
        self.engine.read(replica.room, token)
        self.loop.kick()
        try:
            index = await asyncio.wait_for(future, READ_TIMEOUT)
        except TimeoutError:
            raise Unavailable(f"{replica.room}: no majority confirmed this administrator") from None
        finally:
            self._reads.pop(token, None)
        if index is None:
            raise NotAdministrator(replica.room, replica.administrator or replica.transfer_target)

    # ----------------------------------------------------------- peer input

    async def step_appends(
        self, sender: str, appends: list[peer_pb.RoomAppend]
    ) -> list[peer_pb.RoomAppendResult]:
        """Feed a peer's appends to the engine; the answers, once durable."""
        now = now_ms()
        futures = []
        for append in appends:
            token, future = self.loop.answer_token()
            self.engine.step_append(sender, append, token, now)
            futures.append(future)
        self.loop.kick()
        results = await asyncio.gather(*futures)
        return [r for r in results if isinstance(r, peer_pb.RoomAppendResult)]

    async def step_snapshot(
        self, sender: str, snapshot: peer_pb.RoomSnapshot
    ) -> peer_pb.RoomAppendResult:
        """Feed a peer's snapshot to the engine (its history staged before);
        the answer, once durable."""
        token, future = self.loop.answer_token()
        self.engine.step_snapshot(sender, snapshot, token, now_ms())
        self.loop.kick()
        result = await future
        if isinstance(result, peer_pb.RoomAppendResult) and result.success:
            metrics.SNAPSHOTS.labels(direction="installed").inc()
            log.info("snapshot installed", room=snapshot.room, index=snapshot.index, sender=sender)
        assert isinstance(result, peer_pb.RoomAppendResult)
        return result

    async def step_votes(
        self, candidate: str, votes: list[peer_pb.RoomVote]
    ) -> list[peer_pb.RoomVoteResult]:
        """Feed a peer's vote requests to the engine; the answers, once durable."""
        now = now_ms()
        futures = []
        for vote in votes:
            token, future = self.loop.answer_token()
            self.engine.step_vote(candidate, vote, token, now)
            futures.append(future)
        self.loop.kick()
        results = await asyncio.gather(*futures)
        return [r for r in results if isinstance(r, peer_pb.RoomVoteResult)]

    def append_answered(
        self, peer: str, answers: list[tuple[int, peer_pb.RoomAppendResult]]
    ) -> None:
        """The transport's appends (by id) were answered."""
        now = now_ms()
        for append_id, result in answers:
            self.engine.step_append_result(peer, append_id, result, now)
        self.loop.kick()

    def append_failed(self, append_ids: list[int]) -> None:
        """The transport's appends (by id) got no answer."""
        for append_id in append_ids:
            self.engine.step_append_failed(append_id)
        self.loop.kick()

    def votes_answered(self, voter: str, results: list[peer_pb.RoomVoteResult]) -> None:
        now = now_ms()
        for result in results:
            self.engine.step_vote_result(voter, result, now)
        self.loop.kick()

    def _damaged(self, room: str, why: str) -> None:
        """A read found this node's copy of the room damaged: it is dropped
        (never served nor led from again) and rebuilt from the others."""
        metrics.STORE_DAMAGED.inc()
        log.error("stored copy damaged; rebuilding it", room=room, why=why)
        self.engine.discard_damaged(room)
        self.loop.kick()

    # -------------------------------------------------------------- applying

    def _send(self, messages: list[Outbound]) -> None:
        self.transport(messages)

    def _apply(self, ready: Ready) -> None:
        for change in ready.roles:
            self._role_changed(change)
        for room, committed in ready.committed:
            replica = self.rooms.get(room)
            if replica is not None and replica.role is Role.ADMINISTRATOR:
                self._deliver(replica, committed)
            self._wake_watchers(room)
        for room in ready.dropped:
            self._dropped(room)
        for outcome in ready.moves:
            if outcome.outcome != "prepared":
                metrics.TWOPC.labels(outcome=outcome.outcome).inc()
                metrics.TWOPC_DURATION.observe(outcome.duration_ms / 1000)
            log.info(
                "room move " + outcome.outcome,
                room=outcome.room,
                to=",".join(outcome.target),
                ms=outcome.duration_ms,
            )
        for _room, answer in ready.reads:
            future = self._reads.get(answer.token)
            if future is not None and not future.done():
                future.set_result(answer.index)
        for change in ready.roles:
            self._wake_watchers(change.room)
        for write in ready.writes:
            self._wake_watchers(write.room)

    def _deliver(self, replica: RoomReplica, committed: list[LogEntry]) -> None:
        room = replica.room
        metrics.MESSAGES_COMMITTED.inc(len(committed))
        now = time.perf_counter()
        for entry in committed:
            if self.carriers:
                self.carriers.pop((room, entry.index), None)
            proposed = self._proposed_at.pop((room, entry.index), None)
            if proposed is not None:
                metrics.COMMIT_LATENCY.observe(now - proposed)
        self.commits.committed(replica)
        self.hub.deliver(room, committed)

    def _dropped(self, room: str) -> None:
        """The room left this node (deleted, or moved to a group without it)."""
        log.info("room dropped", room=room)
        self.administered.discard(room)
        err = NotAdministrator(room, "")
        self.commits.fail(room, err)
        self.hub.end_room(room, err)
        self.presence.forget(room)
        for key in [k for k in self._proposed_at if k[0] == room]:
            del self._proposed_at[key]

    def _announce(self, room: str, user: str, online: bool) -> None:
        """Tell a room's subscribers that a member came online or went
        offline, while the room is small: in a room of thousands each arrival
        is a frame to everyone, and a reconnect storm's frames grow with the
        square of the room. Large rooms answer `members` instead (Discord's
        large guilds and Slack's big channels do the same)."""
        replica = self.rooms.get(room)
        if replica is not None and len(replica.tip.members) > self.presence_limit:
            return
        self.hub.presence(room, user, online)

    def _role_changed(self, change: RoleChange) -> None:
        room, before, role = change.room, change.before, change.after
        if role is Role.CANDIDATE:
            metrics.ELECTIONS.labels(outcome="started").inc()
        elif before is Role.CANDIDATE:
            outcome = "won" if role is Role.ADMINISTRATOR else "lost"
            metrics.ELECTIONS.labels(outcome=outcome).inc()
        if role is Role.ADMINISTRATOR:
            self.administered.add(room)
            self.newly_administered.add(room)
            # an election is news; founding a room (a thousand a second) is not
            level = log.info if before is Role.CANDIDATE else log.debug
            level("administrator", room=room, epoch=change.epoch)
        elif before is Role.ADMINISTRATOR:
            self.administered.discard(room)
            log.info("stepped down", room=room, epoch=change.epoch, role=role.value)
            replica = self.rooms.get(room)
            if replica is not None:
                self._lose_reign(replica)
        metrics.ROOMS.labels(role="administrator").set(len(self.administered))
        metrics.ROOMS.labels(role="replica").set(len(self.rooms) - len(self.administered))

    def _lose_reign(self, replica: RoomReplica) -> None:
        """Fail everything that waited on this node's reign over a room."""
        room = replica.room
        err = NotAdministrator(room, replica.administrator)
        self.commits.fail(room, err)
        self.hub.end_room(room, err)
        self.presence.forget(room)
        for key in [k for k in self._proposed_at if k[0] == room]:
            del self._proposed_at[key]

    # ---------------------------------------------------------------- ticks

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            try:
                self.tick()
            except Exception:
                log.error("tick failed", exc_info=True)

    def tick(self) -> None:
        """Advance every replica's timers (elections, heartbeats, step-downs)."""
        self.engine.tick(now_ms(), self.up_nodes() | {self.node_id})
        self.loop.kick()
        lag = 0
        for room in self.administered & self.engine.awake:  # quiescent: nothing to lag
            replica = self.rooms[room]
            for peer in replica.peers:
                lag = max(lag, replica.last_index - replica.match_index.get(peer, 0))
        metrics.REPLICATION_LAG.set(lag)
