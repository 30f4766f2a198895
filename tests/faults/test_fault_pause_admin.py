"""Scenario 4: SIGSTOP a room's administrator for several election timeouts, then SIGCONT."""

import pytest
from faults.harness import FaultLab

pytestmark = pytest.mark.slow

PAUSE_SECONDS = 9.0
"""More than two of the longest (4 s) election timeouts."""


async def test_pause_administrator(fault_lab: FaultLab) -> None:
    """A paused administrator is replaced; after SIGCONT it acks and delivers nothing stale."""
    cluster = await fault_lab.start(store="sqlite")  # so every replica's log is checked too
    await fault_lab.start_load()
    await fault_lab.wait_acks(count=40)
    admins = await fault_lab.administrators()
    victim = admins["r0"]
    rooms = [room for room, admin in admins.items() if admin == victim]
    fault = fault_lab.mark(f"SIGSTOP {victim} (administrator of {rooms})", rooms=rooms)
    cluster.pause_node(victim)
    await fault_lab.wait_acks(room="r0", after=fault.t, timeout=20)
    await fault_lab.hold(max(0.0, PAUSE_SECONDS - (fault_lab.elapsed_since(fault))))
    fault_lab.mark(f"SIGCONT {victim}", rooms=rooms)
    cluster.resume_node(victim)
    await fault_lab.hold(5)
    result = await fault_lab.finish()
    # Consistency of every delivered seq (no divergence, no duplicate, no gap) is what shows
    # the stale administrator committed nothing after the pause.
    result.assert_ok()
    assert (await fault_lab.administrators())["r0"] in cluster.node_ids
