"""A list of change callbacks, shared by the Discovery implementations."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, ParamSpec

from parley.observability.log import get_logger

P = ParamSpec("P")

log = get_logger(__name__)


class Subscribers(Generic[P]):
    """Callbacks to call on every change; one failing callback does not stop the rest."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[P, None]] = []

    def add(self, callback: Callable[P, None]) -> Callable[[], None]:
        """Register callback; returns a function that removes it (safe to call twice)."""
        self._callbacks.append(callback)

        def remove() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return remove

    def notify(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """Call every callback; exceptions are logged, not raised to the notifier."""
        # A copy: a callback may unsubscribe itself while we iterate.
        for callback in list(self._callbacks):
            try:
                callback(*args, **kwargs)
            except Exception:
                log.exception("subscriber failed", callback=repr(callback))
