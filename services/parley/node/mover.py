"""Rooms follow the node set: the node's side of `parley.coordination.move`.

Every second the mover starts the moves placement asks for (paced by
`plan_moves`) in the rooms this node administers, and keeps the move
gauges; every few seconds it asks about copies this node holds but may no
longer be part of (a learner of an aborted move, a node that was down when
its room moved away, an earlier incarnation of a deleted room) and drops
those the room's administrator says left for good.
"""

from __future__ import annotations

import asyncio

from parley.coordination.move import RoomPlacement, plan_moves, superseded
from parley.observability import metrics
from parley.observability.log import get_logger
from parley.room.replica import Role

from .background import BackgroundLoop
from .core import Located, NodeCore
from .engine_loop import now_ms

log = get_logger("parley.node.mover")

PLAN_SECONDS = 1.0
# plans: a full pass even when nothing seems to have changed (a safety net;
# a pass over 50,000 rooms costs about half a second of CPU)
REPLAN_EVERY = 300
SWEEP_EVERY = 2  # plans
SWEEP_MAX_ROOMS = 256
SWEEP_PARALLEL = 32


class RoomMover(BackgroundLoop):
    """Starts room moves and drops stale copies; see the module docstring."""

    name = "room-mover"

    def __init__(self, core: NodeCore, concurrency: int) -> None:
        self.core = core
        self.concurrency = max(1, concurrency)
        super().__init__()
        self._last_view: object = None
        # rooms to look at again in the next plan even if nothing changed:
        # those not serving yet when last looked at
        self._again: set[str] = set()
        # rooms moving after the last plan: while any are, every plan looks
        # at every room (moves are paced: the next ones start as these end)
        self._moving = 0

    async def _run(self) -> None:
        rounds = 0
        while True:
            await asyncio.sleep(PLAN_SECONDS)
            rounds += 1
            try:
                # every room is looked at only when something that decides
                # placement changed or moves are under way; otherwise only
                # the rooms newly administered here: idle rooms by the ten
                # thousand must not cost a pass a second (nor do rooms being
                # created by the thousand)
                view = (
                    frozenset(self.core.members()),
                    frozenset(self.core.up_nodes()),
                    self.core.draining,
                )
                fresh, self.core.newly_administered = self.core.newly_administered, set()
                if view != self._last_view or self._moving or rounds % REPLAN_EVERY == 0:
                    self._last_view = view
                    self.plan()
                elif fresh or self._again:
                    self.plan(fresh | self._again)
                if rounds % SWEEP_EVERY == 0:
                    await self.sweep()
            except Exception:
                log.error("room mover failed", exc_info=True)

    def plan(self, only: set[str] | None = None) -> list[str]:
        """Start the moves placement asks for, in every administered room or
        in `only` of them; returns the rooms started."""
        core = self.core
        up = core.up_nodes() | {core.node_id}
        rooms: list[RoomPlacement] = []
        under = 0
        wanted = min(core.replication, len(set(core.members()) | {core.node_id}))
        looked_at = core.administered if only is None else only & core.administered
        for room in sorted(looked_at):
            replica = core.rooms.get(room)
            if replica is None:
                continue
            group = replica.tip.replicas or tuple(replica.replicas)
            if sum(1 for r in group if r in up) < wanted:
                under += 1
            rooms.append(
                RoomPlacement(
                    room,
                    group,
                    serving=replica.serving,
                    moving=replica.move is not None or bool(replica.tip.joining),
                )
            )
        started: list[str] = []
        if not core.draining:
            now = now_ms()
            for room, target in plan_moves(rooms, core.placement, up, self.concurrency):
                if core.engine.move(room, target, now):
                    log.info("room move started", room=room, to=",".join(target))
                    started.append(room)
            if started:
                core.loop.kick()
        self._again = {r.room for r in rooms if not r.serving}
        self._moving = sum(1 for r in rooms if r.moving) + len(started)
        if only is None:
            # (a partial plan sees no moves: it runs only while none are)
            metrics.MOVES_IN_FLIGHT.set(self._moving)
            metrics.UNDER_REPLICATED.set(under)
        return started

    async def sweep(self) -> list[str]:
        """Drop copies the room's administrator says this node no longer
        belongs to; returns the rooms dropped."""
        core = self.core
        suspects = [
            room
            for room, replica in core.rooms.items()
            if replica.role is not Role.ADMINISTRATOR
            and (core.node_id not in replica.replicas or not replica.administrator)
        ][:SWEEP_MAX_ROOMS]
        dropped: list[str] = []
        answers: dict[str, Located] = {}
        for start in range(0, len(suspects), SWEEP_PARALLEL):
            chunk = suspects[start : start + SWEEP_PARALLEL]
            for room, located in zip(
                chunk, await asyncio.gather(*(core.locate(r) for r in chunk)), strict=True
            ):
                answers[room] = located
        for room, located in answers.items():
            replica = core.rooms.get(room)
            found = located.found
            if replica is None or found is None or replica.role is Role.ADMINISTRATOR:
                continue
            if superseded(
                core.node_id,
                replica.incarnation,
                serving=found.serving,
                committed=found.committed,
                their_incarnation=found.incarnation,
                replicas=found.replicas,
                joining=found.joining,
                learners=found.learners,
            ):
                log.info("dropping a stale copy", room=room, administrator=found.administrator)
                core.engine.drop(room)
                dropped.append(room)
        if dropped:
            core.loop.kick()
        return dropped
