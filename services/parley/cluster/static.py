"""Static discovery: a fixed node set from flags or env (`parley up`, tests)."""

from __future__ import annotations

from collections.abc import Callable

from parley.cluster.discovery import Members
from parley.cluster.subscribers import Subscribers


class StaticDiscovery:
    """A Discovery over a dict given at construction; set_members() changes it."""

    def __init__(self, nodes: dict[str, str]) -> None:
        """Start with a fixed node set.

        Args:
            nodes: {node_id: "host:port"} of every node.
        """
        self._members: Members = dict(nodes)
        self._subscribers: Subscribers[[Members]] = Subscribers()

    def members(self) -> Members:
        """The current node set (a copy)."""
        return dict(self._members)

    def subscribe(self, callback: Callable[[Members], None]) -> Callable[[], None]:
        """Call callback with the new set on every set_members() that changes it."""
        return self._subscribers.add(callback)

    def set_members(self, nodes: dict[str, str]) -> None:
        """Replace the node set and notify subscribers if it differs.

        Call it from the event loop thread: callbacks run synchronously here.
        """
        if nodes == self._members:
            return
        self._members = dict(nodes)
        self._subscribers.notify(self.members())

    async def start(self) -> None:
        """Nothing to discover: the set is known from the start."""

    async def stop(self) -> None:
        """Nothing to release."""
