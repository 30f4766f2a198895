"""Rendezvous placement: deterministic, balanced, minimal movement."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

from parley.cluster.placement import rank, replicas_for

NODES = [f"node-{i}" for i in range(10)]
ROOMS = [f"room-{i}" for i in range(20_000)]


def test_rank_is_a_permutation_of_the_nodes() -> None:
    """rank() returns every node exactly once, duplicates dropped."""
    ranked = rank("general", [*NODES, "node-3"])
    assert sorted(ranked) == sorted(NODES)


def test_rank_does_not_depend_on_input_order() -> None:
    """The same node set in any order gives the same ranking."""
    assert rank("general", NODES) == rank("general", list(reversed(NODES)))
    assert rank("general", NODES) == rank("general", set(NODES))


def test_rank_is_stable_across_processes() -> None:
    """A fresh interpreter (different str hash salt) computes the same ranking."""
    code = f"from parley.cluster.placement import rank;print(','.join(rank('general', {NODES!r})))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        capture_output=True,
        text=True,
        env={"PYTHONHASHSEED": "12345"},
    ).stdout.strip()
    assert out.split(",") == rank("general", NODES)


def test_rooms_rank_nodes_differently() -> None:
    """Different rooms get different orders (it is not one global order)."""
    firsts = {rank(room, NODES)[0] for room in ROOMS[:200]}
    assert firsts == set(NODES)


def test_first_replicas_are_balanced() -> None:
    """Over many rooms each node is first replica for about 1/n of them."""
    counts = Counter(rank(room, NODES)[0] for room in ROOMS)
    expected = len(ROOMS) / len(NODES)
    for node in NODES:
        assert abs(counts[node] - expected) < 0.1 * expected, counts


def test_all_replica_slots_are_balanced() -> None:
    """Each node holds about r/n of all replicas."""
    counts = Counter(node for room in ROOMS for node in replicas_for(room, NODES, 3))
    expected = len(ROOMS) * 3 / len(NODES)
    for node in NODES:
        assert abs(counts[node] - expected) < 0.1 * expected, counts


def test_adding_a_node_moves_about_one_nth() -> None:
    """A new node takes ~1/(n+1) of the first replicas, all of them to itself."""
    grown = [*NODES, "node-new"]
    moved = [room for room in ROOMS if rank(room, NODES)[0] != rank(room, grown)[0]]
    assert all(rank(room, grown)[0] == "node-new" for room in moved)
    share = len(moved) / len(ROOMS)
    assert abs(share - 1 / len(grown)) < 0.02, share


def test_removing_a_node_moves_only_its_rooms() -> None:
    """Removing a node moves exactly the rooms it was first replica for."""
    shrunk = [node for node in NODES if node != "node-4"]
    moved = [room for room in ROOMS if rank(room, NODES)[0] != rank(room, shrunk)[0]]
    assert all(rank(room, NODES)[0] == "node-4" for room in moved)
    share = len(moved) / len(ROOMS)
    assert abs(share - 1 / len(NODES)) < 0.02, share


def test_removal_keeps_the_order_of_the_others() -> None:
    """Removing a node leaves every room's order of the remaining nodes unchanged."""
    shrunk = [node for node in NODES if node != "node-7"]
    for room in ROOMS[:500]:
        assert rank(room, shrunk) == [n for n in rank(room, NODES) if n != "node-7"]


def test_replicas_for_takes_the_first_r() -> None:
    """replicas_for is the prefix of rank of length r."""
    assert replicas_for("general", NODES, 3) == rank("general", NODES)[:3]


def test_replicas_for_with_fewer_nodes_than_r() -> None:
    """With r > n every node is a replica."""
    assert sorted(replicas_for("general", ["a", "b"], 3)) == ["a", "b"]
    assert replicas_for("general", [], 3) == []
    assert replicas_for("general", NODES, 0) == []
