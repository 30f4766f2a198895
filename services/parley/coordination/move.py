"""Moving a room to another replica group: the coordinator's state, pure.

A move is a two-phase commit between the room's old group and its new one,
written into the room's own log (joint consensus, Raft thesis §4.3), so that
its decision is a committed entry like any other:

1. **prepare** — the administrator (the coordinator) brings every node of the
   new group that lacks the room up to date as a *learner*: it ships the log
   in bounded batches, and the learner persists it. A learner whose log holds
   everything committed has voted yes. Writes go on meanwhile.
2. **commit** — the administrator appends `MOVE_JOINT` (new group). From that
   entry on, an entry commits, and an administrator is elected, only with a
   majority of the old group *and* of the new one. Once it is committed,
   the administrator appends `MOVE_DONE`; once that is committed, the new
   group alone holds the room. The `seq`s clients see continue unbroken:
   both entries are invisible, like epoch entries.
3. **abort** — a learner that does not catch up before the deadline, or a
   coordinator that loses its reign before `MOVE_JOINT` is durable on a
   majority, ends the move with nothing changed: the room never stopped.

A coordinator that dies after `MOVE_JOINT` leaves a log that says so on a
majority of both groups; whoever is elected next holds it, and finishes the
move by appending `MOVE_DONE`. No participant waits on a coordinator: one
that lost contact takes part in the next election, or asks the room's
administrator (`superseded`) and drops its copy when the group goes on
without it.

Joint consensus rather than a separate 2PC log: it gives the same
all-or-nothing outcome per room with no second copy of the room's state,
no frozen window for writes, and an election rule that already covers a
coordinator failing at any step.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field

PREPARE_TIMEOUT_MS = 15_000
"""How long learners may take to catch up before the move is aborted."""


@dataclass(slots=True)
class RoomMove:
    """A move this administrator coordinates."""

    target: tuple[str, ...]
    started_ms: int
    deadline_ms: int
    # nodes of the target that are not voters yet (prepare)
    learners: set[str] = field(default_factory=set)
    joint_proposed: bool = False
    done_proposed: bool = False


@dataclass(frozen=True, slots=True)
class MoveOutcome:
    """How a move of one room ended, as its coordinator saw it."""

    room: str
    # "prepared" (every participant voted yes: joint consensus from here),
    # then "committed" | "aborted"
    outcome: str
    duration_ms: int
    target: tuple[str, ...]


def same_group(a: Collection[str], b: Collection[str]) -> bool:
    """True when two groups hold the same nodes (order only ranks successors)."""
    return set(a) == set(b)


def superseded(
    self_id: str,
    incarnation: str,
    *,
    serving: bool,
    committed: bool,
    their_incarnation: str,
    replicas: Collection[str],
    joining: Collection[str],
    learners: Collection[str],
) -> bool:
    """Whether a node's copy of a room is stale, given a peer's LocateRoom answer.

    Only a serving administrator whose group is committed can say so: it
    holds every committed entry, so a committed group without this node (or
    another incarnation of the room) means this copy left the room for good.
    A pending change or a node that merely has a copy says nothing.
    """
    if not (serving and committed):
        return False
    if incarnation and their_incarnation and incarnation != their_incarnation:
        return True
    return self_id not in {*replicas, *joining, *learners}


@dataclass(frozen=True, slots=True)
class RoomPlacement:
    """What the planner knows of one room this node administers."""

    room: str
    group: tuple[str, ...]
    serving: bool
    moving: bool


def plan_moves(
    rooms: list[RoomPlacement],
    placement: Callable[[str], list[str]],
    up: set[str],
    concurrency: int,
) -> list[tuple[str, list[str]]]:
    """Which rooms to start moving now, and where.

    A room moves when placement over the current node set names another
    group. Moves are paced: at most `concurrency` at once, counting those
    under way, so a scale-up does not stall the cluster; and a move starts
    only when every node of its target is up (a learner that is down could
    only make the move time out).
    """
    budget = concurrency - sum(1 for r in rooms if r.moving)
    plans: list[tuple[str, list[str]]] = []
    for room in rooms:
        if budget <= len(plans):
            break
        if room.moving or not room.serving:
            continue
        target = placement(room.room)
        if same_group(target, room.group) or not set(target) <= up:
            continue
        plans.append((room.room, target))
    return plans
