"""The node's driver: feeds room replicas, persists their effects, sends them.

Replicas (`parley.room.replica`) are pure. This module gives them time,
storage and a network, in the order Raft needs: writes are made durable
(one store transaction per batch, over every room) before the messages and
answers that depend on them go out; committed entries are then delivered to
subscribers and to waiting publishers.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from parley._generated import room_service_pb2 as room_pb
from parley._generated.peer_service_pb2 import LocateRoomResponse
from parley.cluster.placement import replicas_for
from parley.observability import metrics, tracing
from parley.observability.log import get_logger
from parley.room.codec import entry_to_client_pb
from parley.room.entries import EntryKind, LogEntry, RoomRecord
from parley.room.replica import Role, RoomReplica, Timing
from parley.room.store import LogStore

from .errors import NotAdministrator, Unavailable

log = get_logger("parley.node")

TICK_SECONDS = 0.05


def now_ms() -> int:
    """Wall-clock milliseconds (entry timestamps and protocol timers)."""
    return time.time_ns() // 1_000_000


async def _nowhere(_room: str) -> LocateRoomResponse | None:
    return None


@dataclass(slots=True, eq=False)
class _CommitWaiter:
    index: int
    epoch: int
    future: asyncio.Future[LogEntry]
    proposed_at: float = 0.0


@dataclass(slots=True, eq=False)
class Subscriber:
    """One Subscribe stream of one gateway for one room."""

    room: str
    gateway_id: str
    next_seq: int
    # entries in their wire form, encoded once for every subscriber of the room
    entries: list[room_pb.Entry] = field(default_factory=list)
    presence: list[tuple[str, bool]] = field(default_factory=list)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    # set when the stream must end with this error (the administrator changed)
    ended: NotAdministrator | Unavailable | None = None
    # set when the room was deleted: the stream ends OK after its entries
    closed: bool = False

    def push(self, entry: room_pb.Entry) -> None:
        if entry.seq >= self.next_seq:
            self.entries.append(entry)
            self.next_seq = entry.seq + 1
            self.wakeup.set()


@dataclass(slots=True)
class Presence:
    """Who is online in a room, per gateway (administrator memory only)."""

    by_gateway: dict[str, dict[str, int]] = field(default_factory=dict)

    def online(self, user: str) -> bool:
        return any(users.get(user, 0) > 0 for users in self.by_gateway.values())


class NodeCore:
    """Every room replica of this node, and the loops that drive them.

    Args:
        node_id: this node's id.
        store: where replicas persist (called from one worker thread).
        members: the discovered node set, {node_id: address}.
        up_nodes: the failure detector's view of nodes that are up.
        replication: how many replicas each room has (R).
        send_appends / send_votes: transport; see node.peers.
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
    ) -> None:
        self.node_id = node_id
        self.store = store
        self.members = members
        self.up_nodes = up_nodes
        self.replication = replication
        self.timing = timing or Timing()
        self.rooms: dict[str, RoomReplica] = {}
        self._records: dict[str, RoomRecord] = {}
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"store-{node_id}")
        self._dirty: set[str] = set()
        self._write_gen = 0
        self._durable_gen = 0
        self._durable_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._flush_wakeup = asyncio.Event()
        self._commit_waiters: dict[str, deque[_CommitWaiter]] = {}
        self._proposed_at: dict[tuple[str, int], float] = {}
        # (room, index) -> trace carrier of the request that proposed it
        self.carriers: dict[tuple[str, int], dict[str, str]] = {}
        self._room_watchers: dict[str, list[asyncio.Future[None]]] = {}
        self.subscribers: dict[str, set[Subscriber]] = {}
        self.presence: dict[str, Presence] = {}
        self._roles: dict[str, Role] = {}
        self.administered: set[str] = set()
        # peer -> rooms with something to send; set by the transport
        self.on_dirty_peer: Callable[[str, str], None] = lambda _peer, _room: None
        self.on_campaigns: Callable[[list[RoomReplica]], None] = lambda _rooms: None
        self.locate: Callable[[str], Awaitable[LocateRoomResponse | None]] = _nowhere
        self._tasks: list[asyncio.Task[None]] = []
        self.draining = False

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Load stored replicas and start the flush and tick loops."""
        loop = asyncio.get_running_loop()
        self._records = await loop.run_in_executor(self._executor, self.store.load)
        for room in list(self._records):
            self._create_replica(room, None)
        self._tasks = [
            asyncio.create_task(self._flush_loop(), name="flush"),
            asyncio.create_task(self._tick_loop(), name="tick"),
        ]
        log.info("node core started", rooms=len(self.rooms))

    async def stop(self) -> None:
        """Stop the loops, end every stream and close the store."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for subs in self.subscribers.values():
            for sub in subs:
                sub.ended = Unavailable("node shutting down")
                sub.wakeup.set()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self.store.close)
        self._executor.shutdown(wait=True)

    def hand_over(self) -> None:
        """Draining: give up every room this node administers."""
        self.draining = True
        now = now_ms()
        for room in list(self.administered):
            replica = self.rooms[room]
            replica.step_down(now)
            self.after(replica)

    # ------------------------------------------------------------- replicas

    def placement(self, room: str) -> list[str]:
        """The room's replicas in placement order, over the discovered nodes."""
        nodes = set(self.members()) | {self.node_id}
        return replicas_for(room, nodes, self.replication)

    def _create_replica(self, room: str, replicas: list[str] | None) -> RoomReplica:
        record = self._records.pop(room, None)
        replica = RoomReplica(
            room,
            self.node_id,
            replicas or self.placement(room),
            record,
            now_ms(),
            self.timing,
        )
        self.rooms[room] = replica
        self._roles[room] = replica.role
        return replica

    def replica_for_peer(self, room: str) -> RoomReplica:
        """The replica a peer's message is about, created when new here."""
        replica = self.rooms.get(room)
        return replica if replica is not None else self._create_replica(room, None)

    def first_up(self, replicas: list[str]) -> str:
        """The first replica the failure detector sees up ("" if none)."""
        up = self.up_nodes() | {self.node_id}
        return next((r for r in replicas if r in up), "")

    async def serving_replica(self, room: str, timeout: float = 5.0) -> RoomReplica:
        """The room's replica once this node serves it as administrator.

        Waits through an election this node is running (or starts one for a
        room nobody has administered yet).

        Raises:
            NotAdministrator: another node administers (or should) the room.
            Unavailable: no administrator could be established in time.
        """
        replica = self.rooms.get(room)
        if replica is None:
            replica = await self._adopt_room(room)
        deadline = time.monotonic() + timeout
        while not replica.serving:
            if self.draining:
                raise NotAdministrator(room, "")
            if replica.role is Role.FOLLOWER:
                if replica.administrator:
                    raise NotAdministrator(room, replica.administrator)
                preferred = self._preferred(replica)
                if preferred != self.node_id:
                    raise NotAdministrator(room, preferred)
                if replica.last_index == 0 and replica.epoch == 0:
                    # a room nobody has written to: no reign to wait out
                    replica.campaign(now_ms())
                    self.after(replica, campaigned=True)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Unavailable(f"no administrator for {room} yet; try again")
            await self.room_changed(room, min(remaining, 0.5))
        return replica

    async def _adopt_room(self, room: str) -> RoomReplica:
        """Start hosting a room this node has no replica of, if it should.

        Placement names this node, but the room may predate a change of the
        node set and live on a group recorded in its log: ask the peers first,
        so as never to start a second, empty copy of an existing room.
        """
        replicas = self.placement(room)
        if self.node_id not in replicas:
            raise NotAdministrator(room, self.first_up(replicas))
        found = await self.locate(room)
        existing = self.rooms.get(room)  # created while we asked
        if existing is not None:
            return existing
        if found is not None:
            group = list(found.replicas)
            hint = found.administrator or self.first_up(group)
            if self.node_id not in group:
                raise NotAdministrator(room, hint)
            # a member of the group that lost its copy: rejoin and catch up
            self._create_replica(room, group)
            raise NotAdministrator(room, hint)
        return self._create_replica(room, replicas)

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

    # -------------------------------------------------------------- effects

    def after(self, replica: RoomReplica, campaigned: bool = False) -> None:
        """Process a replica's effects after any input changed it."""
        room = replica.room
        if replica.has_write:
            self._dirty.add(room)
            self._write_gen += 1
            self._flush_wakeup.set()
        for peer in replica.dirty_peers:
            self.on_dirty_peer(peer, room)
        self._deliver_committed(replica)
        self._track_role(replica)
        if campaigned:
            metrics.ELECTIONS.labels(outcome="started").inc()
            if replica.role is Role.CANDIDATE:
                self.on_campaigns([replica])
        watchers = self._room_watchers.pop(room, None)
        if watchers:
            for future in watchers:
                if not future.done():
                    future.set_result(None)

    def _track_role(self, replica: RoomReplica) -> None:
        room = replica.room
        before = self._roles.get(room)
        role = replica.role
        if before is role:
            return
        self._roles[room] = role
        if before is Role.CANDIDATE:
            outcome = "won" if role is Role.ADMINISTRATOR else "lost"
            metrics.ELECTIONS.labels(outcome=outcome).inc()
        if role is Role.ADMINISTRATOR:
            self.administered.add(room)
            log.info("administrator", room=room, epoch=replica.epoch)
        elif before is Role.ADMINISTRATOR:
            self.administered.discard(room)
            log.info("stepped down", room=room, epoch=replica.epoch, role=role.value)
            self._lose_reign(replica)
        self._update_room_gauges()

    def _update_room_gauges(self) -> None:
        metrics.ROOMS.labels(role="administrator").set(len(self.administered))
        metrics.ROOMS.labels(role="replica").set(len(self.rooms) - len(self.administered))

    def _lose_reign(self, replica: RoomReplica) -> None:
        """Fail everything that waited on this node's reign over a room."""
        room = replica.room
        err = NotAdministrator(room, replica.administrator)
        for waiter in self._commit_waiters.pop(room, deque()):
            if not waiter.future.done():
                waiter.future.set_exception(err)
        for sub in self.subscribers.pop(room, set()):
            sub.ended = err
            sub.wakeup.set()
        self.presence.pop(room, None)

    def _deliver_committed(self, replica: RoomReplica) -> None:
        committed = replica.take_committed()
        if not committed or replica.role is not Role.ADMINISTRATOR:
            return
        room = replica.room
        metrics.MESSAGES_COMMITTED.inc(len(committed))
        now = time.perf_counter()
        for entry in committed:
            if self.carriers:
                self.carriers.pop((room, entry.index), None)
            proposed = self._proposed_at.pop((room, entry.index), None)
            if proposed is not None:
                metrics.COMMIT_LATENCY.observe(now - proposed)
        waiters = self._commit_waiters.get(room)
        while waiters and waiters[0].index <= replica.commit_index:
            waiter = waiters.popleft()
            if waiter.future.done():
                continue
            entry = replica.entry(waiter.index)
            if entry.epoch == waiter.epoch:
                waiter.future.set_result(entry)
            else:
                waiter.future.set_exception(NotAdministrator(room, replica.administrator))
        subs = self.subscribers.get(room)
        if subs:
            for entry in committed:
                if entry.visible:
                    wire = entry_to_client_pb(entry)
                    for sub in subs:
                        sub.push(wire)
            if any(e.kind is EntryKind.DELETE for e in committed):
                for sub in subs:
                    sub.closed = True
                    sub.wakeup.set()

    def propose(
        self,
        replica: RoomReplica,
        kind: EntryKind,
        user: str,
        text: str = "",
        msg_id: str = "",
        *,
        notify: bool = True,
    ) -> asyncio.Future[LogEntry]:
        """Append an entry as administrator; the future resolves on commit.

        With notify=False the caller batches several proposals and calls
        after(replica) once for all of them.
        """
        entry = replica.propose(kind, user, text, msg_id, now_ms())
        self._proposed_at[(replica.room, entry.index)] = time.perf_counter()
        if tracing.enabled():
            # the replication of this entry continues the publish's trace
            self.carriers[(replica.room, entry.index)] = tracing.current_carrier()
        future = self.wait_commit(replica, entry.index)
        if notify:
            self.after(replica)
        return future

    def wait_commit(self, replica: RoomReplica, index: int) -> asyncio.Future[LogEntry]:
        """A future for the entry at index, once committed in this reign."""
        future: asyncio.Future[LogEntry] = asyncio.get_running_loop().create_future()
        if replica.commit_index >= index:
            future.set_result(replica.entry(index))
            return future
        waiter = _CommitWaiter(index, replica.epoch, future)
        waiters = self._commit_waiters.setdefault(replica.room, deque())
        if waiters and waiters[-1].index > index:
            # keep the queue ordered by index (barriers may ask for older ones)
            ordered = sorted([*waiters, waiter], key=lambda w: w.index)
            waiters.clear()
            waiters.extend(ordered)
        else:
            waiters.append(waiter)
        return future

    # ----------------------------------------------------------- durability

    async def durable(self) -> None:
        """Wait until every change made so far is on disk."""
        target = self._write_gen
        if self._durable_gen >= target:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._durable_waiters.append((target, future))
        self._flush_wakeup.set()
        await future

    async def _flush_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._flush_wakeup.wait()
            self._flush_wakeup.clear()
            gen = self._write_gen
            writes = []
            persisted: list[tuple[RoomReplica, int, int]] = []
            for room in self._dirty:
                replica = self.rooms[room]
                write = replica.take_write()
                if write is not None:
                    writes.append(write)
                    persisted.append((replica, replica.last_index, replica.last_epoch))
            self._dirty.clear()
            if writes:
                try:
                    await loop.run_in_executor(self._executor, self.store.write, writes)
                except Exception:
                    # a node that cannot write must not acknowledge anything
                    log.critical("store write failed; exiting", exc_info=True)
                    raise SystemExit(70) from None
            for replica, index, epoch in persisted:
                if index and replica.last_index >= index and replica.epoch_at(index) == epoch:
                    replica.on_persisted(index)
                    self.after(replica)
            self._durable_gen = gen
            still: list[tuple[int, asyncio.Future[None]]] = []
            for target, future in self._durable_waiters:
                if target <= gen:
                    if not future.done():
                        future.set_result(None)
                else:
                    still.append((target, future))
            self._durable_waiters = still
            if still:
                self._flush_wakeup.set()

    # ---------------------------------------------------------------- ticks

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            try:
                self.tick()
            except Exception:
                log.error("tick failed", exc_info=True)

    def tick(self) -> None:
        """Advance every replica's timers and start the campaigns they call."""
        now = now_ms()
        up = self.up_nodes() | {self.node_id}
        if self.draining:
            up = up - {self.node_id}
        campaigns: list[RoomReplica] = []
        for replica in self.rooms.values():
            role = replica.role
            started = replica.tick(now, up)
            if started:
                campaigns.append(replica)
                metrics.ELECTIONS.labels(outcome="started").inc()
            if started or replica.role is not role:
                self.after(replica)
        if campaigns:
            self.on_campaigns(campaigns)
        lag = 0
        for room in self.administered:
            replica = self.rooms[room]
            for peer in replica.peers:
                lag = max(lag, replica.last_index - replica.match_index.get(peer, 0))
        metrics.REPLICATION_LAG.set(lag)

    # ------------------------------------------------------------- presence

    def presence_change(self, room: str, gateway_id: str, user: str, online: bool) -> None:
        """Apply one gateway's presence report and tell every subscriber."""
        presence = self.presence.setdefault(room, Presence())
        before = presence.online(user)
        users = presence.by_gateway.setdefault(gateway_id, {})
        users[user] = 1 if online else 0
        if not online:
            users.pop(user, None)
        after = presence.online(user)
        if before != after:
            self._broadcast_presence(room, user, after)

    def presence_gateway_gone(self, room: str, gateway_id: str) -> None:
        """A gateway's stream ended: its users are offline unless elsewhere."""
        presence = self.presence.get(room)
        if presence is None:
            return
        users = presence.by_gateway.pop(gateway_id, {})
        for user in users:
            if not presence.online(user):
                self._broadcast_presence(room, user, False)

    def _broadcast_presence(self, room: str, user: str, online: bool) -> None:
        for sub in self.subscribers.get(room, ()):
            sub.presence.append((user, online))
            sub.wakeup.set()
