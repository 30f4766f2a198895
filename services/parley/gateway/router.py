"""Route room calls to the room's administrator, retrying within a deadline.

The administrator is found by placement (the room's replicas in rendezvous
order, the first one that is up) and corrected by the nodes themselves: a node
that is not the administrator answers not_administrator naming the one that
is. The answer is cached per room until a call to it fails.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import TypeVar

import grpc

from parley._generated import room_service_pb2_grpc as pb_grpc
from parley.cluster.channels import ChannelPool
from parley.cluster.discovery import Discovery, Members
from parley.cluster.health import HealthMonitor
from parley.cluster.placement import replicas_for
from parley.gateway.backoff import Backoff
from parley.gateway.errors import from_rpc_error
from parley.protocol.errors import ErrorCode, ProtocolError
from parley.room.errors import NotAdministrator, Unavailable

T = TypeVar("T")

RELAY_METADATA = (("parley-relay", "1"),)
"""Asks a node that is not the administrator to pass the call on to it."""
_RELAY: ContextVar[bool] = ContextVar("parley_relay", default=False)


def relaying() -> bool:
    """True inside an attempt that should go through a relaying node."""
    return _RELAY.get()


def relay_metadata() -> tuple[tuple[str, str], ...]:
    """Metadata for the current attempt's call: the relay request when relaying."""
    return RELAY_METADATA if _RELAY.get() else ()


DEFAULT_DEADLINE = 10.0
"""Seconds a request may spend retrying before the client is told `unavailable`."""
ATTEMPT_TIMEOUT = 3.0
"""Seconds one attempt may take: a paused node must not eat the whole deadline."""
MAX_REDIRECTS = 3
"""Hints followed at once in a row; more means nodes disagree, so back off."""
MAX_CACHED_ROOMS = 100_000
"""Bound on the administrator cache; the oldest entries go first."""

Attempt = Callable[[str, float], Awaitable[T]]
"""One try on a node: (node_id, timeout seconds) -> result, raising node errors."""


class Route:
    """The retry policy of one room's calls: which node to try, and when.

    Both one-shot calls (`Router.call`) and the fan-out's long-lived Subscribe
    streams follow it: a not_administrator hint goes to the hinted node at
    once (through a relaying node when this gateway cannot reach it); any
    other failure moves on to the next replica after an exponential backoff
    (50 ms doubling to 1 s), and once every replica failed, round again.
    """

    def __init__(self, router: Router, room: str) -> None:
        self.router = router
        self.room = room
        self.backoff = Backoff()
        self.node = router.target(room)
        self.relay = False
        self._tried: set[str] = set()
        self._redirects = 0

    def redirect(self, hint: str) -> bool:
        """The node answered not_administrator naming `hint`.

        Returns:
            True when the next attempt should follow the hint at once.
        """
        node = self.node
        assert node is not None
        self.router.forget(self.room, node)
        self._tried.add(node)
        if not hint or hint == node or self._redirects >= MAX_REDIRECTS:
            return False
        if not self.router.is_member(hint):
            return False
        self._redirects += 1
        if self.router.reachable(hint):
            self.node = hint
        else:
            # this gateway cannot reach the administrator but `node` can: ask
            # it to pass the call on
            self.relay = True
        return True

    def failed(self) -> None:
        """The attempt on the current node failed otherwise."""
        if self.node is not None:
            self.router.forget(self.room, self.node)
            self._tried.add(self.node)

    def succeeded(self) -> None:
        """The current node answered as the administrator."""
        if self.node is not None and not self.relay:
            self.router.remember(self.room, self.node)
        self.backoff.reset()

    async def wait(self, limit: float | None = None) -> None:
        """Back off (at most `limit` seconds), then pick the next node."""
        delay = self.backoff.next()
        await asyncio.sleep(max(0.0, delay if limit is None else min(delay, limit)))
        self._redirects = 0
        self.relay = False
        self.node = self.router.target(self.room, self._tried)
        if self.node is None:
            # every replica has failed once: go round again
            self._tried.clear()
            self.node = self.router.target(self.room)


class Router:
    """Finds each room's administrator and calls it."""

    def __init__(
        self, discovery: Discovery, pool: ChannelPool, health: HealthMonitor, replicas: int
    ) -> None:
        """Route over `discovery`'s nodes through `pool`, skipping nodes `health` says are down.

        Args:
            discovery: the node set placement is computed over.
            pool: the channels to the nodes.
            health: which nodes are up.
            replicas: how many replicas each room has (DESIGN §2, R).
        """
        self._discovery = discovery
        # the node set, kept current here: `members()` copies it, and a
        # route is looked up for every send
        self._members = discovery.members()
        discovery.subscribe(self._on_members)
        self._pool = pool
        self._health = health
        self._replicas = replicas
        self._admins: dict[str, str] = {}
        self._stubs: dict[str, tuple[grpc.aio.Channel, pb_grpc.RoomServiceAsyncStub]] = {}

    def _on_members(self, members: Members) -> None:
        self._members = members

    def stub(self, node_id: str) -> pb_grpc.RoomServiceAsyncStub:
        """The RoomService stub of a node, rebuilt when the pool replaced its channel.

        Raises:
            KeyError: the node is not a member.
        """
        channel = self._pool.get(node_id)
        cached = self._stubs.get(node_id)
        if cached is not None and cached[0] is channel:
            return cached[1]
        stub = pb_grpc.RoomServiceStub(channel)
        self._stubs[node_id] = (channel, stub)
        return stub

    def is_member(self, node_id: str) -> bool:
        """True when discovery lists the node."""
        return node_id in self._members

    def target(self, room: str, exclude: frozenset[str] | set[str] = frozenset()) -> str | None:
        """The node to ask about `room` now.

        The cached administrator if it is up, else the first replica that is
        up, else the first replica at all (the health view may lag, e.g. at
        start-up; the call finds out). Nodes in `exclude` are skipped.
        """
        cached = self.known_administrator(room)
        if cached is not None and cached not in exclude:
            return cached
        replicas = [
            n for n in replicas_for(room, self._members, self._replicas) if n not in exclude
        ]
        for node_id in replicas:
            if self._health.is_up(node_id):
                return node_id
        return replicas[0] if replicas else None

    def reachable(self, node_id: str) -> bool:
        """True when this gateway's health watch sees the node up."""
        return self._health.is_up(node_id)

    def remember(self, room: str, node_id: str) -> None:
        """Record that `node_id` answered as the room's administrator."""
        if self._admins.get(room) == node_id:
            return
        if len(self._admins) >= MAX_CACHED_ROOMS:
            self._admins.pop(next(iter(self._admins)))
        self._admins[room] = node_id

    def forget(self, room: str, node_id: str | None = None) -> None:
        """Drop the cached administrator (only if it is `node_id`, when given)."""
        if node_id is None or self._admins.get(room) == node_id:
            self._admins.pop(room, None)

    def known_administrator(self, room: str) -> str | None:
        """The cached administrator of the room while it is a member and up."""
        cached = self._admins.get(room)
        if cached is not None and cached in self._members and self._health.is_up(cached):
            return cached
        return None

    def administrator(self, room: str) -> str | None:
        """The cached administrator of the room, if any."""
        return self._admins.get(room)

    async def call(
        self, room: str, attempt: Attempt[T], *, deadline: float = DEFAULT_DEADLINE
    ) -> T:
        """Run `attempt` on the room's administrator until it answers or the deadline passes.

        not_administrator with a hint goes to the hinted node at once; without
        one, and on UNAVAILABLE or DEADLINE_EXCEEDED, the next replica is tried
        after an exponential backoff (50 ms doubling to 1 s).

        Raises:
            ProtocolError: the node's final answer (not_found, forbidden, ...),
                or `unavailable` when the deadline passed.
        """
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline
        route = Route(self, room)
        reason = "no node is up"
        while True:
            remaining = end - loop.time()
            if remaining <= 0:
                raise ProtocolError(
                    ErrorCode.UNAVAILABLE, f"room {room!r} is unavailable: {reason}"
                )
            node = route.node
            if node is not None:
                token = _RELAY.set(route.relay)
                try:
                    result = await self._attempt(attempt, node, min(remaining, ATTEMPT_TIMEOUT))
                except NotAdministrator as error:
                    reason = f"{node} is not its administrator"
                    if route.redirect(error.hint):
                        continue
                except Unavailable as error:
                    route.failed()
                    reason = f"{node}: {error}"
                else:
                    route.succeeded()
                    return result
                finally:
                    _RELAY.reset(token)
            await route.wait(end - loop.time())

    async def _attempt(self, attempt: Attempt[T], node_id: str, budget: float) -> T:
        """One try, with transport failures turned into the three node error types."""
        try:
            return await attempt(node_id, budget)
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None
        except KeyError:
            # The pool no longer knows the node: discovery dropped it.
            raise Unavailable(f"{node_id} left the cluster") from None
