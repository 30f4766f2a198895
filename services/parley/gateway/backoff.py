"""Exponential backoff for retries towards nodes."""

from __future__ import annotations

import random

INITIAL_SECONDS = 0.05
MAX_SECONDS = 1.0


class Backoff:
    """Delays of 50 ms, doubling to at most 1 s, with jitter so gateways spread out."""

    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next = INITIAL_SECONDS

    def next(self) -> float:
        """The delay before the next attempt; each call doubles the following one."""
        delay = self._next
        self._next = min(delay * 2, MAX_SECONDS)
        # Up to 20 % less, so that many gateways retrying together do not stampede.
        return delay * (0.8 + 0.2 * random.random())

    def reset(self) -> None:
        """Start again from the shortest delay (after a success)."""
        self._next = INITIAL_SECONDS
