"""A token bucket: `rate` frames per second on average, bursts of up to `burst`."""

from __future__ import annotations


class TokenBucket:
    """Per-connection frame budget; two floats of state."""

    __slots__ = ("_burst", "_rate", "_stamp", "_tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        """Start full.

        Args:
            rate: tokens added per second.
            burst: the bucket's capacity.
            now: the current time in seconds (a monotonic clock).
        """
        self._rate = rate
        self._burst = float(max(burst, 1))
        self._tokens = self._burst
        self._stamp = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one; False means the frame is over the limit."""
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    @property
    def full(self) -> bool:
        """True when no tokens have been spent lately (as of the last take())."""
        return self._tokens >= self._burst - 1.0
