"""One copy of the small values that tens of thousands of replicas hold alike.

A node holds a replica of every room placed on it, most of them idle. What
each holds alike — node ids, user names, the replica group, the set of peers
seen up — would otherwise be a fresh object per room (a node id parsed from
an append is a new string every time). The groups seen are few (subsets of
the node set), so the table of shared copies stays small.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Iterable
from typing import NoReturn

from parley.room.entries import LogEntry

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


def _refuse(self: object, *args: object, **kwargs: object) -> NoReturn:
    raise TypeError(f"{type(self).__name__}: a shared empty value is read-only")


# Each empty below is shared by every replica that holds nothing of its kind,
# so writing to one would be a bug that corrupts all of them: it refuses,
# loudly. A replica replaces it with a fresh container before its first write.


class _NoPeers(dict[str, int]):
    __setitem__ = __delitem__ = setdefault = pop = popitem = update = clear = _refuse
    __ior__ = _refuse


class _NoEntries(list[LogEntry]):
    append = extend = insert = __setitem__ = __iadd__ = _refuse


class _NoIds(OrderedDict[tuple[str, str], tuple[int, int]]):
    __setitem__ = setdefault = update = _refuse


NO_PEERS: dict[str, int] = _NoPeers()
"""The per-peer table of a replica that does not administer (or rests)."""

NO_ENTRIES: list[LogEntry] = _NoEntries()
"""The log in memory of a replica that holds none (a quiet room folds it all)."""

NO_IDS: OrderedDict[tuple[str, str], tuple[int, int]] = _NoIds()
"""The de-duplication window of a room that holds no ids."""

NO_MARKS: dict[str, int] = _NoPeers()
"""The read markers of a room where nobody has joined or read."""
