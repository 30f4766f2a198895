"""One copy of the small values that tens of thousands of replicas hold alike.

A node holds a replica of every room placed on it, most of them idle. What
each holds alike — node ids, user names, the replica group, the set of peers
seen up — would otherwise be a fresh object per room (a node id parsed from
an append is a new string every time). The groups seen are few (subsets of
the node set), so the table of shared copies stays small.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import NoReturn

_GROUPS: dict[tuple[str, ...], tuple[str, ...]] = {}
_SETS: dict[frozenset[str], frozenset[str]] = {}


def name(text: str) -> str:
    """The shared copy of a node id or user name."""
    return sys.intern(text)


def group(names: Iterable[str]) -> tuple[str, ...]:
    """The shared copy of a tuple of node ids (a replica group)."""
    key = tuple(sys.intern(n) for n in names)
    return _GROUPS.setdefault(key, key)


def nodes(names: Iterable[str]) -> frozenset[str]:
    """The shared copy of a set of node ids."""
    key = frozenset(sys.intern(n) for n in names)
    return _SETS.setdefault(key, key)


class _ReadOnlyTable(dict[str, int]):
    """A per-peer table a replica has no use for (it does not administer).

    Shared by every such replica, so writing to it would be a bug that
    corrupts all of them: it refuses, loudly.
    """

    def _refuse(self) -> NoReturn:
        raise TypeError("the shared empty per-peer table is read-only")

    def __setitem__(self, key: str, value: int) -> None:
        self._refuse()

    def __delitem__(self, key: str) -> None:
        self._refuse()

    def setdefault(self, key: str, default: int = 0) -> int:
        self._refuse()

    def pop(self, key: str, default: int = 0) -> int:  # type: ignore[override]
        self._refuse()

    def popitem(self) -> tuple[str, int]:
        self._refuse()

    def update(self, *args: object, **kwargs: object) -> None:
        self._refuse()

    def clear(self) -> None:
        self._refuse()

    def __ior__(self, other: object) -> NoReturn:  # type: ignore[misc]
        self._refuse()


NO_PEERS: dict[str, int] = _ReadOnlyTable()
"""The empty per-peer table of every replica that does not need one."""
