"""Notifications for users, from every node to their connections here.

Invitations, mentions and read markers concern a user's connections whether
or not they joined the room on them (node/notices.py says why every gateway
listens to every node). The gateway keeps one `Notifications` stream per
node, reopened after any failure, and passes each notification to the
connections its user has here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import grpc

from parley._generated import room_service_pb2 as pb
from parley.cluster.discovery import Discovery, Members
from parley.gateway.backoff import Backoff
from parley.gateway.ratelimit import TokenBucket
from parley.gateway.router import Router
from parley.gateway.session import Session
from parley.observability.log import get_logger
from parley.protocol import frames

log = get_logger(__name__)


STARTUP_GRACE = 5.0
"""Seconds a starting gateway waits for every node's stream before it
settles for those of the nodes that are up."""
OLD_NODE_RETRY = 30.0
"""Seconds between asking a node without Notifications again."""


class UserSessions:
    """The open connections of each user on this gateway, and the frame
    budget they share (one user cannot multiply the rate limit by opening
    more connections)."""

    def __init__(self, gateway_id: str = "", *, rate: float = 0.0, burst: int = 0) -> None:
        self.gateway_id = gateway_id
        self._by_user: dict[str, set[Session]] = {}
        self._rate = rate
        self._burst = burst
        self._buckets: dict[str, TokenBucket] = {}

    def bucket(self, user: str) -> TokenBucket | None:
        """The user's shared budget (None: no per-user limit); kept while they are connected."""
        if self._rate <= 0:
            return None
        found = self._buckets.get(user)
        if found is None:
            found = TokenBucket(self._rate, self._burst, asyncio.get_running_loop().time())
            self._buckets[user] = found
        return found

    def add(self, session: Session) -> None:
        self._by_user.setdefault(session.user, set()).add(session)

    def remove(self, session: Session) -> None:
        sessions = self._by_user.get(session.user)
        if sessions is not None:
            sessions.discard(session)
            if not sessions:
                del self._by_user[session.user]
                self._buckets.pop(session.user, None)

    def of(self, user: str) -> set[Session]:
        return self._by_user.get(user, set())

    def origin(self, session: Session) -> str:
        """The connection's name in notifications it caused ("gateway/connection")."""
        return f"{self.gateway_id}/{id(session):x}"


def notice_frame(notice: pb.Notification) -> str | None:
    """The client frame of a notification (None: a kind this gateway does not know)."""
    if notice.kind == "invitation":
        return frames.invitation(notice.room, notice.by)
    if notice.kind == "mention":
        return frames.mention(notice.room, notice.seq, notice.by)
    if notice.kind == "read":
        return frames.read(notice.room, notice.seq)
    return None


class NoticeWatcher:
    """One Notifications stream per node, following the node set."""

    def __init__(self, discovery: Discovery, router: Router, sessions: UserSessions) -> None:
        self._discovery = discovery
        self._router = router
        self._sessions = sessions
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._opened: set[str] = set()
        self._started_at = 0.0
        """Nodes whose stream has been open at least once."""
        self._unsubscribe: Callable[[], None] = lambda: None

    def started(self, up: set[str]) -> bool:
        """True once every node has had its stream open, or, after
        STARTUP_GRACE, every node that is `up` (a node down when the
        gateway starts must not keep it out of service). Start-up only: a
        gateway that cannot tell users of their invitations and mentions is
        not ready yet, but later a node's stream reopening is not worth
        taking it out of service."""
        nodes = set(self._discovery.members())
        if time.monotonic() - self._started_at > STARTUP_GRACE:
            nodes &= up
        return nodes <= self._opened

    def start(self) -> None:
        self._started_at = time.monotonic()
        self._follow(self._discovery.members())
        self._unsubscribe = self._discovery.subscribe(self._follow)

    async def close(self) -> None:
        self._unsubscribe()
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _follow(self, members: Members) -> None:
        for node in set(self._tasks) - set(members):
            self._tasks.pop(node).cancel()
        for node in set(members) - set(self._tasks):
            self._tasks[node] = asyncio.get_running_loop().create_task(
                self._watch(node), name=f"notices-{node}"
            )

    async def _watch(self, node: str) -> None:
        backoff = Backoff()
        request = pb.NotificationsRequest(gateway_id=self._sessions.gateway_id)
        while True:
            try:
                call = self._router.stub(node).Notifications(request, wait_for_ready=True)
                try:
                    await call.initial_metadata()
                    self._opened.add(node)
                    async for notice in call:
                        backoff.reset()
                        self._deliver(notice)
                finally:
                    call.cancel()
            except grpc.aio.AioRpcError as error:
                if error.code() is grpc.StatusCode.UNIMPLEMENTED:
                    # a node of the previous release: nothing to wait for
                    # (asked again now and then, for after its upgrade)
                    self._opened.add(node)
                    await asyncio.sleep(OLD_NODE_RETRY)
                    continue
                log.debug("notifications stream ended", node=node, code=error.code().name)
            except KeyError:
                log.debug("notifications: node left", node=node)
            except Exception:
                log.error("notifications stream failed", node=node, exc_info=True)
            await asyncio.sleep(backoff.next())

    def _deliver(self, notice: pb.Notification) -> None:
        frame = notice_frame(notice)
        if frame is None:
            return
        for session in self._sessions.of(notice.user):
            if notice.origin and notice.origin == self._sessions.origin(session):
                continue  # (it has its reply)
            session.reply(frame)
