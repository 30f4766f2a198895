"""Rendezvous (highest-random-weight) placement of rooms on nodes (DESIGN §2).

Every process computes the same answer from the room name and the node set
alone, so there is no directory service to ask. Adding or removing one of n
nodes changes the first replica of only about 1/n of the rooms.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def weight(room: str, node: str) -> int:
    """The rendezvous weight of `node` for `room`.

    blake2b rather than hash(): Python's str hash is salted per process, and
    every process must agree on placement.
    """
    digest = hashlib.blake2b(f"{node}\x00{room}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def rank(room: str, nodes: Iterable[str]) -> list[str]:
    """Every node id, best first, for this room.

    Args:
        room: the room name.
        nodes: the node ids of the placement set (duplicates are ignored).

    Returns:
        The node ids in descending weight order; equal weights are ordered by
        node id so the result never depends on the input order.
    """
    return sorted(set(nodes), key=lambda node: (-weight(room, node), node))


def replicas_for(room: str, nodes: Iterable[str], r: int) -> list[str]:
    """The room's replicas: the first min(r, n) nodes of rank().

    The first one is the preferred administrator; the rest follow in the order
    in which they take over.
    """
    return rank(room, nodes)[: max(r, 0)]
