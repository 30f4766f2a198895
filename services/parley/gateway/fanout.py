"""Room feeds: one Subscribe stream per room with local members, fanned out to sockets.

Every entry is encoded once (to UTF-8 JSON bytes) and the same bytes are put
on each member socket's outbound queue. A feed remembers the next seq it
expects; when its stream ends (administrator change, node down) it
re-subscribes from there, so each socket sees every seq once, rising by 1.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Protocol

import grpc

from parley._generated import room_service_pb2 as pb
from parley.gateway.errors import from_rpc_error
from parley.gateway.latency import DeliveryClock
from parley.gateway.presence import PresenceReporter
from parley.gateway.room_client import RoomClient
from parley.gateway.router import RELAY_METADATA, Route, Router
from parley.gateway.session import FRAMES_OUT
from parley.gateway.wire import text_frame
from parley.observability.log import get_logger
from parley.protocol import frames
from parley.protocol.errors import ErrorCode, ProtocolError
from parley.room.errors import NotAdministrator, Unavailable

log = get_logger(__name__)

TAIL_SIZE = 256
"""Recent entries kept per room, so most joins are served their backlog from memory."""
HISTORY_CHUNK = 500
"""Entries fetched per History call while a joining socket catches up."""


class Member(Protocol):
    """A local socket as the fan-out sees it (implemented by Session)."""

    user: str
    closed: bool
    rooms: set[str]

    def send_frames(self, payloads: list[bytes], wire: bytes) -> None:
        """Send frames (JSON payloads, and the same as WebSocket bytes); never blocks
        and never detaches synchronously."""
        ...

    def room_deleted(self, room: str) -> None:
        """The room was deleted: send `deleted` and forget the room."""
        ...


Item = tuple[int, bytes, bytes]
"""One encoded entry: (seq, JSON payload, WebSocket frame bytes)."""


class _Gap(Exception):
    """The stream skipped a seq; re-subscribe from the one expected."""


class RoomFeed:
    """The state of one room on this gateway."""

    __slots__ = (
        "deleted", "joining", "leave_at", "leaving", "next_seq", "room", "sockets", "tail",
        "task", "users",
    )  # fmt: skip

    def __init__(self, room: str, next_seq: int) -> None:
        self.room = room
        self.next_seq = next_seq
        """The seq the stream delivers next (last delivered + 1)."""
        self.sockets: dict[Member, int] = {}
        """Attached sockets and the first seq each wants (later ones skip older entries)."""
        self.users: dict[str, int] = {}
        """Local sockets per user, for online/offline."""
        self.tail: deque[Item] = deque(maxlen=TAIL_SIZE)
        """The newest entries, encoded: every seq from tail[0] to next_seq - 1 (all
        entries after the create entry are visible, and Subscribe sends no others)."""
        self.joining = 0
        """Sockets catching up; they keep the feed alive before they are attached."""
        self.deleted = False
        self.task: asyncio.Task[None] | None = None
        self.leaving: dict[Member, int] = {}
        """Sockets of users who left, detached once their leave entry (the seq) is delivered."""
        self.leave_at: int | None = None
        """The smallest seq in `leaving`, checked per entry; None when nobody is leaving."""


class Fanout:
    """Every room feed of this gateway."""

    def __init__(self, router: Router, presence: PresenceReporter, clock: DeliveryClock) -> None:
        self._router = router
        self._room_service = RoomClient(router)
        self._presence = presence
        self._clock = clock
        self._feeds: dict[str, RoomFeed] = {}

    def feed(self, room: str) -> RoomFeed | None:
        """The room's feed, if any local socket is attached or joining."""
        return self._feeds.get(room)

    def fanned_out(self, room: str, seq: int) -> bool:
        """True when this gateway has already delivered the room's entry `seq`."""
        feed = self._feeds.get(room)
        return feed is not None and feed.next_seq > seq

    async def attach(self, member: Member, room: str, start: int) -> None:
        """Send `member` every entry with seq >= start, then the live ones.

        The caller has sent `joined` already. Older entries come from the
        feed's tail or, beyond it, from History; the socket is attached to the
        live feed in the same step (no await) as it is served the last of its
        backlog, so nothing is missed or repeated.

        Raises:
            ProtocolError: History failed; the socket is not attached.
        """
        feed = self._feeds.get(room)
        if feed is None:
            feed = self._feeds[room] = RoomFeed(room, start)
            self._add(feed, member, start)
            feed.task = asyncio.get_running_loop().create_task(
                self._follow(feed), name=f"feed-{room}"
            )
            self._maybe_drop(feed)  # the member may have closed already
            return
        counted = feed.sockets.pop(member, None) is not None  # joined again: start over
        self._unmark_leaving(feed, member)
        feed.joining += 1
        try:
            await self._catch_up(feed, member, start, counted)
        finally:
            feed.joining -= 1
            if counted and member not in feed.sockets and not feed.deleted:
                self._uncount(feed, member.user)  # a re-join that failed or was closed
            self._maybe_drop(feed)

    def detach_after(self, member: Member, room: str, seq: int) -> None:
        """Detach `member` once it has been delivered entry `seq` (its user's leave entry).

        So the leaver sees every entry up to and including its own leave, no
        matter whether the node's reply or the feed comes first.
        """
        feed = self._feeds.get(room)
        if feed is None or member not in feed.sockets or feed.next_seq > seq:
            self.detach(member, room)
            member.rooms.discard(room)
            return
        feed.leaving[member] = seq
        feed.leave_at = min(feed.leaving.values())

    def detach(self, member: Member, room: str) -> None:
        """Stop delivering the room to `member`; the last socket of a user goes offline."""
        feed = self._feeds.get(room)
        if feed is None or feed.sockets.pop(member, None) is None:
            return
        self._unmark_leaving(feed, member)
        self._uncount(feed, member.user)
        self._maybe_drop(feed)

    def _uncount(self, feed: RoomFeed, user: str) -> None:
        """One socket of `user` fewer; the last one takes the user offline."""
        count = feed.users.get(user, 0) - 1
        if count <= 0:
            feed.users.pop(user, None)
            self._presence.report(feed.room, user, False)
        else:
            feed.users[user] = count

    def members_of(self, room: str, user: str) -> list[Member]:
        """The attached sockets of `user` in `room`."""
        feed = self._feeds.get(room)
        return [] if feed is None else [m for m in feed.sockets if m.user == user]

    async def close(self) -> None:
        """Cancel every stream (at shutdown)."""
        tasks = [f.task for f in self._feeds.values() if f.task is not None]
        self._feeds.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _catch_up(self, feed: RoomFeed, member: Member, start: int, counted: bool) -> None:
        next_seq = start
        while True:
            if feed.deleted:
                member.room_deleted(feed.room)
                return
            if next_seq >= feed.next_seq:
                self._add(feed, member, next_seq, counted)
                return
            tail_first = feed.tail[0][0] if feed.tail else None
            if tail_first is not None and tail_first <= next_seq:
                wanted = [item for item in feed.tail if item[0] >= next_seq]
                if wanted:
                    member.send_frames([p for _, p, _ in wanted], b"".join(w for _, _, w in wanted))
                    FRAMES_OUT.inc(len(wanted))
                self._add(feed, member, feed.next_seq, counted)
                return
            upper = tail_first if tail_first is not None else feed.next_seq
            before = min(upper, next_seq + HISTORY_CHUNK)
            response = await self._room_service.history(
                feed.room, member.user, before, before - next_seq
            )
            if member.closed:
                return
            payloads = []
            for entry in response.entries:
                if next_seq <= entry.seq < before:
                    text = frames.encode_entry(feed.room, entry)
                    if text is not None:
                        payloads.append(text.encode())
                    next_seq = entry.seq + 1
            if payloads:
                member.send_frames(payloads, b"".join(text_frame(p) for p in payloads))
                FRAMES_OUT.inc(len(payloads))
            # Entries the node did not return cannot be served; never loop on them.
            next_seq = max(next_seq, before)

    def _add(self, feed: RoomFeed, member: Member, first_seq: int, counted: bool = False) -> None:
        if member.closed:
            return
        feed.sockets[member] = first_seq
        if counted:
            return
        count = feed.users.get(member.user, 0)
        feed.users[member.user] = count + 1
        if count == 0:
            self._presence.report(feed.room, member.user, True)

    def _maybe_drop(self, feed: RoomFeed) -> None:
        """Close the feed once no socket is attached or joining."""
        if feed.sockets or feed.joining or self._feeds.get(feed.room) is not feed:
            return
        del self._feeds[feed.room]
        self._clock.forget_room(feed.room)
        if feed.task is not None:
            feed.task.cancel()

    async def _follow(self, feed: RoomFeed) -> None:
        """Keep the room's Subscribe stream open, resuming at next_seq, until deleted or dropped."""
        room = feed.room
        route = Route(self._router, room)
        while True:
            node = route.node
            if node is not None:
                try:
                    if await self._stream(feed, route):
                        return
                    reason = "stream ended"
                except NotAdministrator as error:
                    if route.redirect(error.hint):
                        continue
                    reason = "not the administrator"
                except Unavailable as error:
                    reason = str(error)
                except _Gap as error:
                    reason = str(error)
                    log.warning("feed gap; re-subscribing", room=room, error=reason)
                except ProtocolError as error:
                    if error.code == ErrorCode.NOT_FOUND:
                        # The room is gone (deleted while we were resubscribing).
                        self._room_deleted(feed)
                        return
                    reason = f"{error.code}: {error.message}"
                    log.warning("feed failed", room=room, node=node, error=reason)
                route.failed()
                log.debug("feed re-subscribing", room=room, node=node, reason=reason)
            await route.wait()

    async def _stream(self, feed: RoomFeed, route: Route) -> bool:
        """One Subscribe stream; True when it ended with the room's delete entry."""
        node = route.node
        assert node is not None
        request = pb.SubscribeRequest(
            room=feed.room,
            from_seq=feed.next_seq,
            gateway_id=self._presence.gateway_id,
            online_users=sorted(feed.users),
        )
        try:
            call = self._router.stub(node).Subscribe(
                request, metadata=RELAY_METADATA if route.relay else ()
            )
        except KeyError:
            raise Unavailable(f"{node} left the cluster") from None
        try:
            first = True
            async for batch in call:
                route.succeeded()
                if self._deliver(feed, batch, first):
                    return True
                first = first and not batch.entries
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None
        finally:
            call.cancel()
        return False

    def _deliver(self, feed: RoomFeed, batch: pb.SubscribeResponse, first: bool = False) -> bool:
        """Fan one batch out; True when it held the delete entry.

        `first`: the batch opens a stream, whose first entry may be later
        than asked for: retention deleted those before it (never a gap
        afterwards).
        """
        room = feed.room
        items: list[Item] = []
        try:
            for entry in batch.entries:
                seq = entry.seq
                if seq < feed.next_seq:
                    continue  # already delivered before a resume
                if seq > feed.next_seq and first and not items:
                    log.info(
                        "backlog starts later: retention", room=room, asked=feed.next_seq, seq=seq
                    )
                    feed.next_seq = seq
                if seq > feed.next_seq:
                    raise _Gap(f"expected seq {feed.next_seq}, got {seq}")
                feed.next_seq = seq + 1
                if entry.kind == pb.ENTRY_KIND_DELETE:
                    self._fan(feed, items)
                    items = []
                    self._room_deleted(feed)
                    return True
                text = frames.encode_entry(room, entry)
                if text is None:
                    continue
                payload = text.encode()
                item = (seq, payload, text_frame(payload))
                feed.tail.append(item)
                items.append(item)
        finally:
            # Also before a _Gap: what arrived in order is delivered.
            self._fan(feed, items)
        if batch.presence:
            payloads = [frames.online(room, e.user, e.online).encode() for e in batch.presence]
            wire = b"".join(text_frame(p) for p in payloads)
            for member in feed.sockets:
                member.send_frames(payloads, wire)
            FRAMES_OUT.inc(len(feed.sockets) * len(payloads))
        for user in batch.typing:
            payload = frames.typing(room, user).encode()
            wire = text_frame(payload)
            for member in feed.sockets:
                if member.user != user:
                    member.send_frames([payload], wire)
                    FRAMES_OUT.inc()
        return False

    def _fan(self, feed: RoomFeed, items: list[Item]) -> None:
        """Send consecutive entries to every attached socket that wants them.

        Each socket gets them in one write; almost always it wants all of
        them and the same joined bytes go to every socket.
        """
        if not items:
            return
        low, high = items[0][0], items[-1][0]
        payloads = [payload for _, payload, _ in items]
        wire = items[0][2] if len(items) == 1 else b"".join(w for _, _, w in items)
        leaving = feed.leaving
        sent = 0
        for member, first in feed.sockets.items():
            last = leaving.get(member, high) if leaving else high
            if first <= low and last >= high:
                member.send_frames(payloads, wire)
                sent += len(items)
                continue
            # A socket that joined with a later since, or is leaving mid-batch.
            chosen = [item for item in items if first <= item[0] <= last]
            if chosen:
                member.send_frames([p for _, p, _ in chosen], b"".join(w for _, _, w in chosen))
                sent += len(chosen)
        FRAMES_OUT.inc(sent)
        for seq, _, _ in items:
            self._clock.delivered(feed.room, seq)
        if feed.leave_at is not None and high >= feed.leave_at:
            self._finish_leaves(feed, high)

    def _unmark_leaving(self, feed: RoomFeed, member: Member) -> None:
        if feed.leaving.pop(member, None) is not None:
            feed.leave_at = min(feed.leaving.values(), default=None)

    def _finish_leaves(self, feed: RoomFeed, seq: int) -> None:
        """Detach the leaving sockets whose leave entry (at most `seq`) is delivered."""
        for member, leave_seq in list(feed.leaving.items()):
            if leave_seq <= seq:
                self.detach(member, feed.room)
                member.rooms.discard(feed.room)

    def _room_deleted(self, feed: RoomFeed) -> None:
        """Tell every local member, then drop the room's state."""
        feed.deleted = True
        members = list(feed.sockets)
        feed.sockets.clear()
        feed.users.clear()
        for member in members:
            member.room_deleted(feed.room)
        if self._feeds.get(feed.room) is feed:
            del self._feeds[feed.room]
        self._presence.drop(feed.room)
        self._clock.forget_room(feed.room)
