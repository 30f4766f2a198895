"""A file whose parsed contents follow the file: keys and certificates rotate
without a restart (Kubernetes swaps a mounted Secret's or ConfigMap's files in
place; cert-manager renews certificates the same way)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from parley.observability.log import get_logger

log = get_logger(__name__)

T = TypeVar("T")

RECHECK_SECONDS = 1.0
"""How often a file's identity (inode, size, mtime) is looked at, at most."""


def _identity(path: str) -> tuple[int, int, int]:
    stat = os.stat(path)  # follows the ..data symlink of a mounted volume
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


class WatchedFile(Generic[T]):
    """`parse(contents)` of a file, parsed again when the file changes.

    A changed file that does not parse keeps the last good value (a
    half-written file must not lock everyone out) and is logged.
    """

    def __init__(self, path: str, parse: Callable[[bytes], T]) -> None:
        """Read and parse the file now.

        Raises:
            OSError: it cannot be read.
            ValueError: it does not parse.
        """
        self.path = path
        self._parse = parse
        self._stamp = _identity(path)
        with open(path, "rb") as file:
            self._value = parse(file.read())
        self._checked = time.monotonic()
        self.version = 0
        """Counts the changes taken; callers compare it to rebuild what depends on the value."""

    def get(self) -> T:
        """The current value, re-read first when the file changed."""
        now = time.monotonic()
        if now - self._checked >= RECHECK_SECONDS:
            self._checked = now
            self.refresh()
        return self._value

    def refresh(self) -> bool:
        """Re-read now if the file changed; True when a new value was taken."""
        try:
            stamp = _identity(self.path)
            if stamp == self._stamp:
                return False
            with open(self.path, "rb") as file:
                value = self._parse(file.read())
        except (OSError, ValueError) as error:
            log.warning("file not reloaded; keeping the last good one", path=self.path,
                        error=str(error))  # fmt: skip
            return False
        self._stamp = stamp
        self._value = value
        self.version += 1
        log.info("file reloaded", path=self.path)
        return True
