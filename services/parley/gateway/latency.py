"""Delivery latency: from a client's send arriving to its entry being fanned out here."""

from __future__ import annotations

import time
from collections import OrderedDict

from parley.observability.metrics import DELIVERY_LATENCY

MAX_WAITING = 4096
"""Acked sends remembered until their fan-out; beyond it the oldest are forgotten."""


class DeliveryClock:
    """Remembers when acked sends arrived, keyed by (room, seq), until fanned out."""

    __slots__ = ("_waiting",)

    def __init__(self) -> None:
        self._waiting: OrderedDict[tuple[str, int], float] = OrderedDict()

    def acked(self, room: str, seq: int, received: float, fanned_out: bool) -> None:
        """Record an acked send that arrived at `received` (time.perf_counter()).

        Args:
            fanned_out: True when this gateway already delivered the entry (the
                feed can beat the ack); it is observed now.
        """
        if fanned_out:
            DELIVERY_LATENCY.observe(time.perf_counter() - received)
            return
        self._waiting[(room, seq)] = received
        if len(self._waiting) > MAX_WAITING:
            self._waiting.popitem(last=False)

    def delivered(self, room: str, seq: int) -> None:
        """The entry was fanned out: observe its latency if it was sent through here."""
        if not self._waiting:
            return
        received = self._waiting.pop((room, seq), None)
        if received is not None:
            DELIVERY_LATENCY.observe(time.perf_counter() - received)

    def forget_room(self, room: str) -> None:
        """Drop every waiting send of a room whose feed closed."""
        for key in [k for k in self._waiting if k[0] == room]:
            del self._waiting[key]
