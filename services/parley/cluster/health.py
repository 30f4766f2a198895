"""Failure detection with the standard gRPC health service (DESIGN §2).

For every discovered node the monitor keeps one `grpc.health.v1` Health.Watch
stream open. The node is up while the last status on that stream is SERVING.
The channel's keepalive (see channels.py) fails the stream within ~2 s when
the peer goes silent (SIGSTOP, a cut cable), and a dead peer fails it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from parley.cluster.channels import ChannelPool
from parley.cluster.discovery import Discovery, Members
from parley.cluster.subscribers import Subscribers
from parley.observability import metrics
from parley.observability.log import get_logger

log = get_logger(__name__)

RETRY_MIN_SECONDS = 0.2
"""First wait before re-watching a node whose stream failed."""
RETRY_MAX_SECONDS = 1.0
"""Longest wait between re-watch attempts: a node that comes back is seen quickly."""

_SERVING = health_pb2.HealthCheckResponse.SERVING


class HealthMonitor:
    """Which discovered nodes are up, and callbacks on every change.

    Nodes start as down until their health stream says SERVING. Call start()
    once, stop() at shutdown; the ChannelPool stays the caller's to close.
    """

    def __init__(
        self, discovery: Discovery, pool: ChannelPool, *, self_id: str | None = None
    ) -> None:
        """Prepare to watch every node of `discovery` through `pool`.

        Args:
            discovery: the node set to watch.
            pool: where the channels to the nodes come from.
            self_id: this process's own node id, if it is a node: not watched,
                always up.
        """
        self._discovery = discovery
        self._pool = pool
        self._self_id = self_id
        self._addresses: Members = {}
        self._up: set[str] = set()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._subscribers: Subscribers[[str, bool]] = Subscribers()
        self._unsubscribe: Callable[[], None] | None = None

    async def start(self) -> None:
        """Open a health watch to every node; returns without waiting for answers."""
        if self._unsubscribe is not None:
            return
        self._unsubscribe = self._discovery.subscribe(self._on_members)
        self._on_members(self._discovery.members())

    async def stop(self) -> None:
        """Close every watch. Nodes keep their last state; no callbacks follow."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def is_up(self, node_id: str) -> bool:
        """True while the node's health stream last said SERVING (always for self)."""
        return node_id == self._self_id or node_id in self._up

    def up_nodes(self) -> set[str]:
        """Every node that is up now, self included."""
        up = set(self._up)
        if self._self_id is not None:
            up.add(self._self_id)
        return up

    def subscribe(self, callback: Callable[[str, bool], None]) -> Callable[[], None]:
        """Call callback(node_id, up) on the event loop on every transition.

        Returns:
            A function that removes the subscription.
        """
        return self._subscribers.add(callback)

    async def wait_up(self, node_id: str, timeout: float) -> bool:
        """Wait until the node is up.

        Returns:
            True once it is up, False if it is not within `timeout` seconds.
        """
        if self.is_up(node_id):
            return True
        became_up = asyncio.get_running_loop().create_future()

        def on_change(changed: str, up: bool) -> None:
            if changed == node_id and up and not became_up.done():
                became_up.set_result(None)

        unsubscribe = self.subscribe(on_change)
        try:
            async with asyncio.timeout(timeout):
                await became_up
            return True
        except TimeoutError:
            return False
        finally:
            unsubscribe()

    def _on_members(self, members: Members) -> None:
        """Watch new nodes, forget removed ones, re-watch nodes that moved."""
        old = self._addresses
        self._addresses = {n: a for n, a in members.items() if n != self._self_id}
        for node_id in old.keys() - self._addresses.keys():
            self._unwatch(node_id)
            self._set(node_id, False)
            with contextlib.suppress(KeyError):
                metrics.PEER_UP.remove(node_id)
        for node_id, address in self._addresses.items():
            if node_id in self._tasks and old.get(node_id) == address:
                continue
            # A new address is a new process: down until it says SERVING.
            self._unwatch(node_id)
            self._set(node_id, False)
            self._tasks[node_id] = asyncio.get_running_loop().create_task(
                self._watch(node_id), name=f"health-watch-{node_id}"
            )

    def _unwatch(self, node_id: str) -> None:
        task = self._tasks.pop(node_id, None)
        if task is not None:
            task.cancel()

    async def _watch(self, node_id: str) -> None:
        """Keep one Health.Watch stream to the node open, forever."""
        delay = RETRY_MIN_SECONDS
        while True:
            try:
                channel = self._pool.get(node_id)
            except (KeyError, RuntimeError):
                # Removed from discovery (and _on_members cancelled us), or the
                # pool is closed at shutdown: nothing left to watch.
                return
            try:
                stub = health_pb2_grpc.HealthStub(channel)
                # wait_for_ready: while the node is unreachable the call waits for
                # the channel to reconnect instead of failing in a tight loop.
                call = stub.Watch(health_pb2.HealthCheckRequest(service=""), wait_for_ready=True)
                async for response in call:
                    up = response.status == _SERVING
                    self._set(node_id, up)
                    if up:
                        delay = RETRY_MIN_SECONDS
                reason = "stream ended"
            except grpc.aio.AioRpcError as error:
                reason = f"{error.code().name}: {error.details()}"
            except grpc.aio.UsageError as error:
                # The channel was closed under us (the node moved): get() makes a new one.
                reason = f"UsageError: {error}"
            except asyncio.CancelledError:
                # grpc.aio raises CancelledError in the reader when the channel is
                # closed under the call; only our own task's cancellation stops us.
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
                reason = "call cancelled: channel closed"
            self._set(node_id, False, reason)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_SECONDS)

    def _set(self, node_id: str, up: bool, reason: str = "") -> None:
        """Record the node's state; on a change update the gauge and notify."""
        was_up = node_id in self._up
        if node_id in self._addresses:
            metrics.PEER_UP.labels(peer=node_id).set(1 if up else 0)
        if up == was_up:
            return
        if up:
            self._up.add(node_id)
        else:
            self._up.discard(node_id)
        log.info("peer up" if up else "peer down", peer=node_id, reason=reason or None)
        self._subscribers.notify(node_id, up)
