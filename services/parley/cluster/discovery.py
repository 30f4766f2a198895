"""The Discovery interface: who the nodes are, and changes to that set."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

Members = dict[str, str]
"""{node_id: "host:port"} of every node in the placement set."""


class Discovery(Protocol):
    """A source of the node set. Implementations: static, kubernetes."""

    def members(self) -> Members:
        """The current node set (a copy)."""
        ...

    def subscribe(self, callback: Callable[[Members], None]) -> Callable[[], None]:
        """Call callback (on the event loop) with the new set on every change.

        Returns:
            A function that removes the subscription.
        """
        ...

    async def start(self) -> None:
        """Begin discovering; returns once the first node set is known."""
        ...

    async def stop(self) -> None:
        """Stop watching and release resources."""
        ...
