"""Waiting on conditions with deadlines: the only way tests should wait."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def wait_for(
    predicate: Callable[[], T | Awaitable[T]],
    timeout: float,
    interval: float = 0.02,
    message: str = "",
) -> T:
    """Poll `predicate` until it returns something truthy, and return that.

    Args:
        predicate: a plain or async callable; exceptions it raises propagate.
        timeout: seconds before giving up.
        interval: seconds between polls.
        message: what was awaited, for the error.

    Returns:
        The first truthy value the predicate returned.

    Raises:
        TimeoutError: when the deadline passes; the message includes the last value.
    """
    deadline = time.monotonic() + timeout
    while True:
        value: Any = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[no-any-return]
        if time.monotonic() >= deadline:
            what = message or getattr(predicate, "__name__", "condition")
            raise TimeoutError(
                f"timed out after {timeout:g} s waiting for {what} (last: {value!r})"
            )
        await asyncio.sleep(interval)
