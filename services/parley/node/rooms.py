"""RoomService: what gateways call.

Each handler finds the room's serving replica, asks the room's rules
(`parley.room.rules`) what the request may do, proposes or reads, and
translates the outcome into the answer.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Sequence

import grpc

from parley._generated import room_service_pb2 as pb
from parley._generated import room_service_pb2_grpc as room_grpc
from parley.observability import metrics, tracing
from parley.observability.log import get_logger
from parley.room import rules
from parley.room.annotations import Folded, fold
from parley.room.codec import entry_to_client_pb
from parley.room.entries import ANNOTATION_KINDS, EntryKind, LogEntry
from parley.room.errors import (
    BadRequest,
    NotAdministrator,
    RoomError,
    Unavailable,
    error_for_code,
)
from parley.room.history import committed_before, committed_visible, stored_seq
from parley.room.replica import RoomReplica
from parley.room.retention import Cutoffs
from parley.room.state import RoomOptions

from .core import NodeCore
from .errors import Context, rpc_boundary, stream_boundary
from .relay import (
    RELAY_TIMEOUT,
    StubFor,
    relay_requested,
    relay_stream,
    relayable,
    relayed_metadata,
    should_relay,
)
from .subscribers import Subscriber

HISTORY_MAX = 500
# (a bound on a room's own retention: any larger is "forever" in practice)
log = get_logger("parley.node.rooms")

MAX_RETAIN = 2**31 - 1
STREAM_CHUNK = 1000
# a gateway further behind than this is cut off and resubscribes from its
# last seq, reading the backlog from the log instead of node memory
SUBSCRIBER_MAX_PENDING = 50_000


Target = tuple[LogEntry | None, Folded | None]
"""The message an edit, unsend or reaction is about, and how it stands."""

MENTION = re.compile(r"(?<![\w@])@([a-z0-9][a-z0-9_-]{0,31})(?![a-z0-9_-])")
"""`@user` in a message's text (not inside a word or an address)."""

_PUBLISH_KINDS = {
    EntryKind.READ,
    EntryKind.MESSAGE,
    EntryKind.EDIT,
    EntryKind.UNSEND,
    EntryKind.REACT,
    EntryKind.UNREACT,
}


def publish_kind(request: pb.PublishRequest) -> EntryKind:
    """What a publish appends (unspecified: a message).

    Raises:
        BadRequest: a kind that is not published (a join, a create...).
    """
    if not request.kind:
        return EntryKind.MESSAGE
    try:
        kind = EntryKind(request.kind)
    except ValueError:
        kind = None
    if kind not in _PUBLISH_KINDS:
        raise BadRequest("only messages, edits, unsends, reactions and reads are published")
    return kind


class RoomServicer(room_grpc.RoomServiceServicer):
    """The administrator side of every room request."""

    def __init__(self, core: NodeCore, room_stub: StubFor) -> None:
        self.core = core
        self.room_stub = room_stub

    async def _commit(
        self, replica: RoomReplica, kind: EntryKind, user: str, text: str = "", msg_id: str = ""
    ) -> LogEntry:
        return await self.core.propose(replica, kind, user, text, msg_id)

    async def _barrier(self, replica: RoomReplica) -> None:
        """Wait until everything this administrator has appended is committed."""
        await self.core.wait_commit(replica, replica.last_index)

    @rpc_boundary
    @relayable
    async def CreateRoom(
        self, request: pb.CreateRoomRequest, context: Context
    ) -> pb.CreateRoomResponse:
        rules.check_names(request.room, request.user)
        # the create entry records the replica group; a move records the next
        retain = (min(request.retain_entries, MAX_RETAIN), min(request.retain_seconds, MAX_RETAIN))
        if request.dm:
            rules.check_dm(request.room, request.user, request.dm)
        options = RoomOptions(retain, request.private, tuple(request.dm))
        entry = await self.core.create_room(request.room, request.user, options)
        return pb.CreateRoomResponse(owner=entry.user, seq=entry.seq)

    @rpc_boundary
    @relayable
    async def Invite(self, request: pb.InviteRequest, context: Context) -> pb.InviteResponse:
        rules.check_names(request.room, request.user)
        replica = await self.core.serving_replica(request.room)
        if rules.check_invite(replica.tip, request.room, request.user, request.invitee):
            await self._commit(replica, EntryKind.INVITE, request.user, request.invitee)
        else:
            await self.core.confirm_read(replica)
        self.core.notices.publish(
            pb.Notification(
                user=request.invitee, kind="invitation", room=request.room, by=request.user
            )
        )
        return pb.InviteResponse()

    @rpc_boundary
    @relayable
    async def Typing(self, request: pb.TypingRequest, context: Context) -> pb.TypingResponse:
        rules.check_names(request.room, request.user)
        replica = await self.core.serving_replica(request.room)
        rules.check_member(replica.tip, request.room, request.user)
        self.core.hub.typing(request.room, request.user)
        return pb.TypingResponse()

    @stream_boundary
    async def Notifications(
        self, request: pb.NotificationsRequest, context: Context
    ) -> AsyncIterator[pb.Notification]:
        async for notice in self.core.notices.stream(lambda: context.send_initial_metadata(())):
            yield notice

    @rpc_boundary
    @relayable
    async def DeleteRoom(
        self, request: pb.DeleteRoomRequest, context: Context
    ) -> pb.DeleteRoomResponse:
        rules.check_names(request.room, request.user)
        replica = await self.core.serving_replica(request.room)
        rules.check_delete(replica.tip, request.room, request.user)
        entry = await self._commit(replica, EntryKind.DELETE, request.user)
        return pb.DeleteRoomResponse(seq=entry.seq)

    @rpc_boundary
    @relayable
    async def JoinRoom(self, request: pb.JoinRoomRequest, context: Context) -> pb.JoinRoomResponse:
        (outcome,) = await self._join_all([request])
        if isinstance(outcome, RoomError):
            raise outcome
        return outcome

    @rpc_boundary
    async def JoinRooms(
        self, request: pb.JoinRoomsRequest, context: Context
    ) -> pb.JoinRoomsResponse:
        results = []
        for outcome in await self._join_all(request.joins):
            if isinstance(outcome, RoomError):
                hint = outcome.hint if isinstance(outcome, NotAdministrator) else ""
                results.append(
                    pb.JoinRoomResult(
                        error_code=outcome.code, error_message=outcome.message, administrator=hint
                    )
                )
            else:
                results.append(pb.JoinRoomResult(joined=outcome))
        return pb.JoinRoomsResponse(results=results)

    async def _join_all(
        self, joins: Sequence[pb.JoinRoomRequest]
    ) -> list[pb.JoinRoomResponse | RoomError]:
        """Join a batch: a join entry per new member (a member already, or
        one joining twice in the batch, appends nothing), one read
        confirmation per room for the rest, and the rooms described once
        every join of the batch is committed."""
        outcomes: list[pb.JoinRoomResponse | RoomError | None] = [None] * len(joins)
        replicas: dict[str, RoomReplica | RoomError] = {}
        joining: list[tuple[int, asyncio.Future[LogEntry] | None]] = []
        for i, request in enumerate(joins):
            room, user = request.room, request.user
            try:
                rules.check_names(room, user)
                if room not in replicas:
                    try:
                        replicas[room] = await self.core.serving_replica(room)
                    except RoomError as err:
                        replicas[room] = err
                replica = replicas[room]
                if isinstance(replica, RoomError):
                    raise replica
                # (the tip holds what was proposed: a second join of the
                # same user in this batch finds the first)
                if rules.needs_join(replica.tip, room, user):
                    joining.append((i, self.core.propose(replica, EntryKind.JOIN, user)))
                else:
                    joining.append((i, None))
            except RoomError as err:
                outcomes[i] = err
        confirmed: dict[str, RoomError | None] = {}
        for room in {joins[i].room for i, commit in joining if commit is None}:
            replica = replicas[room]
            assert not isinstance(replica, RoomError)
            try:
                await self.core.confirm_read(replica)
                await self._barrier(replica)
                confirmed[room] = None
            except RoomError as err:
                confirmed[room] = err
        joined: list[int] = []
        members_before = {i for i, commit in joining if commit is None}
        for i, commit in joining:
            try:
                if commit is not None:
                    await commit
                elif (refusal := confirmed[joins[i].room]) is not None:
                    raise refusal
                joined.append(i)
            except RoomError as err:
                outcomes[i] = err
        described: dict[str, tuple[int, list[str], int]] = {}
        for i in joined:
            room = joins[i].room
            if room not in described:
                replica = replicas[room]
                assert not isinstance(replica, RoomError)
                described[room] = (
                    max(replica.committed_seq, 0),
                    sorted(replica.tip.members),
                    await self._first_retained(replica),
                )
            last_seq, members, first_seq = described[room]
            tip = replicas[room].tip  # type: ignore[union-attr]
            outcomes[i] = pb.JoinRoomResponse(
                last_seq=last_seq,
                members=members,
                already_member=i in members_before,
                first_seq=first_seq,
                dm=tip.dm,
                unread=tip.unread(joins[i].user),
            )
        answered = [o for o in outcomes if o is not None]
        assert len(answered) == len(joins)
        return answered

    def _cut(self, replica: RoomReplica) -> Cutoffs:
        """Where the room's retention cuts its history now."""
        return self.core.retention_cut(replica)

    async def _first_retained(self, replica: RoomReplica) -> int:
        """The first visible seq retention keeps (0: it keeps everything)."""
        cut = self._cut(replica)
        if not cut.seq and not cut.ts_ms:
            return 0
        offset, next_seq = replica.offset, cut.seq
        while next_seq <= stored_seq(replica):
            page = await self.core.store.visible_from(replica.room, next_seq, offset, 200)
            if not page:
                break
            kept = cut.keep(page)
            if kept:
                return kept[0].seq
            next_seq = page[-1].seq + 1
        kept = cut.keep(committed_visible(replica, next_seq))
        return kept[0].seq if kept else max(replica.committed_seq, 0) + 1

    @rpc_boundary
    @relayable
    async def LeaveRoom(
        self, request: pb.LeaveRoomRequest, context: Context
    ) -> pb.LeaveRoomResponse:
        rules.check_names(request.room, request.user)
        replica = await self.core.serving_replica(request.room)
        rules.check_member(replica.tip, request.room, request.user)
        entry = await self._commit(replica, EntryKind.LEAVE, request.user)
        return pb.LeaveRoomResponse(seq=entry.seq)

    def _order(
        self,
        replica: RoomReplica,
        request: pb.PublishRequest,
        kind: EntryKind,
        about: Target | None = None,
    ) -> tuple[asyncio.Future[LogEntry] | asyncio.Future[None], int | None] | pb.PublishResponse:
        """Validate and append one publish without waiting.

        Args:
            kind: what it appends (`publish_kind`).
            about: for an edit, unsend or reaction, the message it is about
                (`_look_up`).

        Returns:
            The answer at once (a committed duplicate), or a future that
            resolves on commit with, for an uncommitted duplicate, its seq.

        Raises:
            RoomError: the publish is refused.
        """
        if not replica.serving:
            raise NotAdministrator(replica.room, replica.administrator)
        if kind is EntryKind.READ:
            # (no id needed: a marker only rises, so a retry changes nothing)
            tip, user = replica.tip, request.user
            marker = rules.check_read(tip, replica.room, user, request.target)
            if marker is None:
                return pb.PublishResponse(seq=tip.reads.get(user, 0), duplicate=True)
            # (its id names the connection that read, which needs no telling)
            return self.core.propose(replica, kind, user, "", request.client_msg_id, marker), None
        if kind is EntryKind.MESSAGE:
            original = rules.check_publish(
                replica.tip, replica.room, request.user, request.text, request.client_msg_id
            )
        else:
            original = rules.check_retry(
                replica.tip, replica.room, request.user, request.client_msg_id
            )
            if original is None:
                target, folded = about if about is not None else (None, None)
                rules.check_annotation(
                    replica.tip, replica.room, request.user, kind, request.text, target, folded
                )
        if original is not None:
            if original <= replica.committed_seq:
                return pb.PublishResponse(seq=original, duplicate=True)
            return self.core.wait_commit(replica, replica.last_index), original
        future = self.core.propose(
            replica,
            kind,
            request.user,
            request.text,
            request.client_msg_id,
            request.target if kind is not EntryKind.MESSAGE else 0,
        )
        return future, None

    def _notify(self, room: str, user: str, kind: str, seq: int, by: str, origin: str = "") -> None:
        self.core.notices.publish(
            pb.Notification(user=user, kind=kind, room=room, seq=seq, by=by, origin=origin)
        )

    def _notify_mentions(self, room: str, entry: LogEntry) -> None:
        """Tell each member named `@user` in a message (but its author)."""
        replica = self.core.rooms.get(room)
        if replica is None:
            return
        members = replica.tip.members
        for name in set(MENTION.findall(entry.text)):
            if name in members and name != entry.user:
                self._notify(room, name, "mention", entry.seq, entry.user)

    async def _look_up(self, replica: RoomReplica, seq: int) -> Target:
        """The committed message at `seq` (None: there is none) and how it
        stands after the committed entries about it."""
        if seq > replica.committed_seq:
            return None, None
        offset = replica.offset
        if seq > stored_seq(replica):
            found = committed_visible(replica, seq, 1)
        else:
            found = await self.core.store.visible_from(replica.room, seq, offset, 1)
        if not found or found[0].seq != seq or found[0].kind is not EntryKind.MESSAGE:
            return None, None
        return found[0], fold(found[0], await self._annotations(replica, seq, seq))

    async def _annotations(
        self, replica: RoomReplica, first_seq: int, last_seq: int
    ) -> list[LogEntry]:
        """Committed edits, unsends and reactions about first_seq..last_seq,
        in log order: memory's (read first, at the offset as it is now),
        after the store's up to that offset."""
        offset = replica.offset
        recent = [
            e
            for e in committed_visible(replica, first_seq + 1)
            if e.kind in ANNOTATION_KINDS and first_seq <= e.target <= last_seq
        ]
        stored = (
            await self.core.store.annotations(replica.room, first_seq, last_seq, offset)
            if offset
            else []
        )
        archive = self.core.archive
        if archive is None or first_seq > replica.tip.archived_seq:
            return stored + recent
        # older annotations may be gone from the room log but not from the archive
        try:
            archived = await archive.annotations(replica.room, first_seq, last_seq)
        except Exception as error:
            log.warning("archive unreadable", room=replica.room, error=str(error)[:200])
            archived = []
        newer = {e.seq for e in stored} | {e.seq for e in recent}
        return [e for e in archived if e.seq not in newer] + stored + recent

    async def _folded(self, replica: RoomReplica, entries: list[LogEntry]) -> list[pb.Entry]:
        """History entries, each message as it stands now (edits, unsends and
        reactions folded in)."""
        out = [entry_to_client_pb(e) for e in entries]
        seqs = [e.seq for e in entries if e.kind is EntryKind.MESSAGE]
        if not seqs:
            return out
        about: dict[int, list[LogEntry]] = {}
        for annotation in await self._annotations(replica, seqs[0], seqs[-1]):
            about.setdefault(annotation.target, []).append(annotation)
        for entry, msg in zip(entries, out, strict=True):
            annotations = about.get(entry.seq)
            if entry.kind is not EntryKind.MESSAGE or not annotations:
                continue
            folded = fold(entry, annotations)
            msg.text, msg.edited, msg.unsent = folded.text, folded.edited, folded.unsent
            msg.reactions.extend(
                pb.Reaction(emoji=emoji, users=users) for emoji, users in folded.reactions.items()
            )
        return out

    async def _publish_all(
        self, publishes: Sequence[pb.PublishRequest]
    ) -> list[pb.PublishResponse | RoomError]:
        """Order a batch: one append per message, one replication step per room."""
        received = time.perf_counter()
        refused: dict[int, RoomError] = {}
        kinds: list[EntryKind] = []
        for i, request in enumerate(publishes):
            kind = EntryKind.MESSAGE
            try:
                rules.check_names(request.room, request.user)
                kind = publish_kind(request)
                rules.check_published(kind, request.text, request.client_msg_id)
            except RoomError as err:
                refused[i] = err
            kinds.append(kind)
        replicas: dict[str, RoomReplica | RoomError] = {}
        for room in {p.room for i, p in enumerate(publishes) if i not in refused}:
            try:
                replicas[room] = await self.core.serving_replica(room)
            except RoomError as err:
                replicas[room] = err
        outcomes: list[pb.PublishResponse | RoomError | None] = []
        waits: list[tuple[int, asyncio.Future[LogEntry] | asyncio.Future[None], int | None]] = []
        for i, request in enumerate(publishes):
            try:
                if i in refused:
                    raise refused[i]
                replica = replicas[request.room]
                if isinstance(replica, RoomError):
                    raise replica
                about = None
                if kinds[i] in ANNOTATION_KINDS:
                    # (awaits a read: this batch's earlier items are ordered)
                    about = await self._look_up(replica, request.target)
                ordered = self._order(replica, request, kinds[i], about)
            except RoomError as err:
                outcomes.append(err)
                continue
            if isinstance(ordered, pb.PublishResponse):
                outcomes.append(ordered)
                continue
            waits.append((len(outcomes), *ordered))
            outcomes.append(None)
        ordered_at = time.perf_counter()
        for _ in waits:
            metrics.ORDER_LATENCY.observe(ordered_at - received)
        for i, future, duplicate_seq in waits:
            try:
                entry = await future
            except RoomError as err:
                outcomes[i] = err
                continue
            if entry is None:  # a duplicate: its original's seq
                outcomes[i] = pb.PublishResponse(seq=duplicate_seq or 0, duplicate=True)
            elif entry.kind is EntryKind.READ:
                outcomes[i] = pb.PublishResponse(seq=entry.target)
                self._notify(
                    publishes[i].room,
                    entry.user,
                    "read",
                    entry.target,
                    entry.user,
                    origin=entry.client_msg_id,
                )
            else:
                outcomes[i] = pb.PublishResponse(seq=entry.seq)
                if entry.kind is EntryKind.MESSAGE and "@" in entry.text:
                    self._notify_mentions(publishes[i].room, entry)
        return [o for o in outcomes if o is not None]

    @rpc_boundary
    @relayable
    async def Publish(self, request: pb.PublishRequest, context: Context) -> pb.PublishResponse:
        with tracing.span_from_metadata(
            "node.publish", context.invocation_metadata(), room=request.room
        ):
            (outcome,) = await self._publish_all([request])
        if isinstance(outcome, RoomError):
            raise outcome
        return outcome

    @rpc_boundary
    async def PublishBatch(
        self, request: pb.PublishBatchRequest, context: Context
    ) -> pb.PublishBatchResponse:
        with tracing.span_from_metadata(
            "node.publish", context.invocation_metadata(), messages=len(request.publishes)
        ):
            return await self._publish_batch(request, context)

    @stream_boundary
    async def PublishStream(
        self, request_iterator: AsyncIterator[pb.PublishBatchRequest], context: Context
    ) -> AsyncIterator[pb.PublishBatchResponse]:
        async for request in request_iterator:
            parent = {"traceparent": request.traceparent} if request.traceparent else None
            with tracing.span_from_carrier("node.publish", parent, messages=len(request.publishes)):
                response = await self._publish_batch(request, context)
            yield response

    async def _publish_batch(
        self, request: pb.PublishBatchRequest, context: Context
    ) -> pb.PublishBatchResponse:
        outcomes = await self._publish_all(request.publishes)
        if relay_requested(context):
            await self._relay_publishes(request.publishes, outcomes)
        results = []
        for outcome in outcomes:
            if isinstance(outcome, RoomError):
                results.append(
                    pb.PublishResult(
                        error_code=outcome.code,
                        error_message=outcome.message,
                        administrator=outcome.hint if isinstance(outcome, NotAdministrator) else "",
                    )
                )
            else:
                results.append(pb.PublishResult(seq=outcome.seq, duplicate=outcome.duplicate))
        return pb.PublishBatchResponse(results=results)

    async def _relay_publishes(
        self,
        publishes: Sequence[pb.PublishRequest],
        outcomes: list[pb.PublishResponse | RoomError],
    ) -> None:
        """Pass the items this node does not administer on to their administrators
        (those its failure detector sees up)."""
        up = self.core.up_nodes() - {self.core.node_id}
        by_hint: dict[str, list[int]] = {}
        for i, outcome in enumerate(outcomes):
            if isinstance(outcome, NotAdministrator) and outcome.hint in up:
                by_hint.setdefault(outcome.hint, []).append(i)

        async def relay(hint: str, indexes: list[int]) -> None:
            batch = pb.PublishBatchRequest(publishes=[publishes[i] for i in indexes])
            try:
                response = await self.room_stub(hint).PublishBatch(
                    batch, timeout=RELAY_TIMEOUT, metadata=relayed_metadata(), wait_for_ready=True
                )
            except grpc.aio.AioRpcError as err:
                for i in indexes:
                    outcomes[i] = Unavailable(f"relay to {hint} failed: {err.code().name}")
                return
            for i, result in zip(indexes, response.results, strict=True):
                if result.error_code:
                    outcomes[i] = error_for_code(
                        result.error_code, result.error_message, result.administrator
                    )
                else:
                    outcomes[i] = pb.PublishResponse(seq=result.seq, duplicate=result.duplicate)

        await asyncio.gather(*(relay(hint, ix) for hint, ix in by_hint.items()))

    @rpc_boundary
    @relayable
    async def History(self, request: pb.HistoryRequest, context: Context) -> pb.HistoryResponse:
        rules.check_names(request.room, request.user)
        replica = await self.core.serving_replica(request.room)
        rules.check_member(replica.tip, request.room, request.user)
        await self.core.confirm_read(replica)
        limit = min(request.limit or 50, HISTORY_MAX)
        before = request.before_seq or None
        offset = replica.offset
        entries = committed_before(replica, before, limit)
        if len(entries) < limit and offset:
            # older than the in-memory tail: from the store, up to the offset
            # as it was (what memory held above it is in `entries`)
            older_than = entries[0].seq if entries else before
            if older_than is None or older_than > 0:
                older = await self.core.store.visible_before(
                    request.room, older_than, offset, limit - len(entries)
                )
                entries = older + entries
        entries = self._cut(replica).keep(entries)
        if len(entries) < limit and self.core.archive is not None:
            entries = await self._archived_before(replica, entries, before, limit) + entries
        return pb.HistoryResponse(entries=await self._folded(replica, entries))

    async def _archived_before(
        self, replica: RoomReplica, entries: list[LogEntry], before: int | None, limit: int
    ) -> list[LogEntry]:
        """What the archive holds older than the room log's page: history past
        retention, transparently. Nothing if the archive cannot be read now."""
        oldest = entries[0].seq if entries else before
        if oldest is None:
            oldest = replica.committed_seq + 1
        oldest = min(oldest, replica.tip.archived_seq + 1)
        if oldest <= 0:
            return []
        assert self.core.archive is not None
        try:
            return await self.core.archive.before(replica.room, oldest, limit - len(entries))
        except Exception as error:
            log.warning("archive unreadable", room=replica.room, error=str(error)[:200])
            return []

    @rpc_boundary
    async def ListRooms(
        self, request: pb.ListRoomsRequest, context: Context
    ) -> pb.ListRoomsResponse:
        rooms = []
        user = request.user
        for name in sorted(self.core.administered):
            replica = self.core.rooms[name]
            tip = replica.tip
            if not replica.serving or not tip.exists:
                continue
            if tip.private and user not in tip.members:
                continue  # (listed to its members only)
            rooms.append(
                pb.RoomInfo(
                    room=name,
                    owner=tip.owner,
                    member_count=len(tip.members),
                    last_seq=max(replica.committed_seq, 0),
                    administrator=self.core.node_id,
                    last_ts_ms=tip.last_ts_ms,
                    private=tip.private,
                    dm=tip.dm,
                    unread=tip.unread(user) if user in tip.members else 0,
                    member=user in tip.members,
                )
            )
        return pb.ListRoomsResponse(rooms=rooms)

    @rpc_boundary
    @relayable
    async def Members(self, request: pb.MembersRequest, context: Context) -> pb.MembersResponse:
        rules.check_names(request.room)
        replica = await self.core.serving_replica(request.room)
        rules.check_visible(replica.tip, request.room, request.user)
        await self.core.confirm_read(replica)
        presence = self.core.presence
        return pb.MembersResponse(
            members=[
                pb.Member(user=user, online=presence.online(request.room, user))
                for user in sorted(replica.tip.members)
            ]
        )

    @rpc_boundary
    @relayable
    async def UpdatePresence(
        self, request: pb.UpdatePresenceRequest, context: Context
    ) -> pb.UpdatePresenceResponse:
        rules.check_names(request.room)
        for change in request.changes:
            rules.check_names(request.room, change.user)
        await self.core.serving_replica(request.room)
        for change in request.changes:
            self.core.presence.change(request.room, request.gateway_id, change.user, change.online)
        return pb.UpdatePresenceResponse()

    @stream_boundary
    async def Subscribe(
        self, request: pb.SubscribeRequest, context: Context
    ) -> AsyncIterator[pb.SubscribeResponse]:
        core = self.core
        room = request.room
        try:
            rules.check_names(room)
            replica = await core.serving_replica(room)
        except NotAdministrator as err:
            if not should_relay(err, core.node_id, core.up_nodes(), context):
                raise
            async for item in relay_stream(self.room_stub(err.hint), request, context):
                yield item
            return
        rules.check_exists(replica.tip, room)
        await core.confirm_read(replica)
        rules.check_exists(replica.tip, room)
        cut = self._cut(replica)
        next_seq = request.from_seq
        # the backlog older than the in-memory tail comes from the store, a
        # page at a time, until the rest is in memory (the tail moves on
        # meanwhile: each round looks again)
        while next_seq <= stored_seq(replica):
            page = await core.store.visible_from(room, next_seq, replica.offset, STREAM_CHUNK)
            if core.rooms.get(room) is not replica or not replica.serving:
                raise NotAdministrator(room, replica.administrator)
            if not page:
                break
            next_seq = page[-1].seq + 1
            kept = cut.keep(page)
            if kept:
                yield pb.SubscribeResponse(entries=[entry_to_client_pb(e) for e in kept])
        sub = Subscriber(room, request.gateway_id, next_seq)
        # the in-memory backlog and registration happen with no await in
        # between, so the live feed continues exactly where the backlog ends
        backlog = committed_visible(replica, next_seq)
        if backlog:
            sub.next_seq = backlog[-1].seq + 1
            backlog = cut.keep(backlog)
        core.hub.add(sub)
        for user in request.online_users:
            core.presence.change(room, request.gateway_id, user, True)
        try:
            for i in range(0, len(backlog), STREAM_CHUNK):
                chunk = backlog[i : i + STREAM_CHUNK]
                yield pb.SubscribeResponse(entries=[entry_to_client_pb(e) for e in chunk])
            del backlog
            while True:
                await sub.wakeup.wait()
                sub.wakeup.clear()
                if sub.entries or sub.presence or sub.typing:
                    if len(sub.entries) > SUBSCRIBER_MAX_PENDING:
                        raise RoomError("subscriber too far behind; resubscribe")
                    entries, sub.entries = sub.entries, []
                    presence, sub.presence = sub.presence, []
                    typing, sub.typing = sub.typing, []
                    for i in range(0, max(len(entries), 1), STREAM_CHUNK):
                        first = i == 0
                        yield pb.SubscribeResponse(
                            entries=entries[i : i + STREAM_CHUNK],
                            presence=[pb.PresenceEvent(user=u, online=o) for u, o in presence]
                            if first
                            else [],
                            typing=typing if first else [],
                        )
                if sub.ended is not None:
                    raise sub.ended
                if sub.closed:
                    return
        finally:
            core.hub.remove(sub)
            if request.gateway_id and not core.hub.has_gateway(room, request.gateway_id):
                core.presence.gateway_gone(room, request.gateway_id)
