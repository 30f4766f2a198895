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
from parley.cluster.discovery import Discovery
from parley.cluster.health import HealthMonitor
from parley.cluster.placement import replicas_for
from parley.gateway.backoff import Backoff
from parley.gateway.errors import GatewayError, NotAdministrator, Unavailable, from_rpc_error
from parley.protocol.errors import ErrorCode

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
        self._pool = pool
        self._health = health
        self._replicas = replicas
        self._admins: dict[str, str] = {}
        self._stubs: dict[str, tuple[grpc.aio.Channel, pb_grpc.RoomServiceStub]] = {}

    def stub(self, node_id: str) -> pb_grpc.RoomServiceStub:
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
        return node_id in self._discovery.members()

    def target(self, room: str, exclude: frozenset[str] | set[str] = frozenset()) -> str | None:
        """The node to ask about `room` now.

        The cached administrator if it is up, else the first replica that is
        up, else the first replica at all (the health view may lag, e.g. at
        start-up; the call finds out). Nodes in `exclude` are skipped.
        """
        members = self._discovery.members()
        cached = self._admins.get(room)
        if (
            cached is not None
            and cached not in exclude
            and cached in members
            and self._health.is_up(cached)
        ):
            return cached
        replicas = [n for n in replicas_for(room, members, self._replicas) if n not in exclude]
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
            GatewayError: the node's final answer (not_found, forbidden, ...),
                or `unavailable` when the deadline passed.
        """
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline
        backoff = Backoff()
        tried: set[str] = set()
        redirects = 0
        reason = "no node is up"
        relay = False
        node = self.target(room)
        while True:
            remaining = end - loop.time()
            if remaining <= 0:
                raise GatewayError(ErrorCode.UNAVAILABLE, f"room {room!r} is unavailable: {reason}")
            if node is not None:
                token = _RELAY.set(relay)
                try:
                    result = await self._attempt(attempt, node, min(remaining, ATTEMPT_TIMEOUT))
                except NotAdministrator as error:
                    self.forget(room, node)
                    tried.add(node)
                    reason = f"{node} is not its administrator"
                    hint = error.hint
                    if hint and hint != node and redirects < MAX_REDIRECTS and self.is_member(hint):
                        redirects += 1
                        if self.reachable(hint):
                            node = hint
                        else:
                            # this gateway cannot reach the administrator but
                            # `node` can: ask it to pass the call on
                            relay = True
                        continue
                except Unavailable as error:
                    self.forget(room, node)
                    tried.add(node)
                    reason = f"{node}: {error}"
                else:
                    if not relay:
                        self.remember(room, node)
                    return result
                finally:
                    _RELAY.reset(token)
            redirects = 0
            relay = False
            await asyncio.sleep(max(0.0, min(backoff.next(), end - loop.time())))
            node = self.target(room, tried)
            if node is None:
                # Every replica has failed once: go round again.
                tried.clear()
                node = self.target(room)

    async def unary(
        self, room: str, method: str, request: object, *, deadline: float = DEFAULT_DEADLINE
    ) -> object:
        """call() a unary RoomService method by name, e.g. "JoinRoom"."""

        async def attempt(node_id: str, budget: float) -> object:
            return await getattr(self.stub(node_id), method)(
                request, timeout=budget, metadata=relay_metadata()
            )

        return await self.call(room, attempt, deadline=deadline)

    async def _attempt(self, attempt: Attempt[T], node_id: str, budget: float) -> T:
        """One try, with transport failures turned into the three node error types."""
        try:
            return await attempt(node_id, budget)
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None
        except KeyError:
            # The pool no longer knows the node: discovery dropped it.
            raise Unavailable(f"{node_id} left the cluster") from None
