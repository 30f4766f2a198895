"""Scenario 2: SIGKILL a room's administrator under load, restart it later."""

import pytest
from faults.harness import FaultLab

pytestmark = pytest.mark.slow


async def test_kill_administrator(fault_lab: FaultLab) -> None:
    """Killing r0's administrator loses nothing acked; its rooms accept messages within 10 s."""
    cluster = await fault_lab.start()
    await fault_lab.start_load()
    await fault_lab.wait_acks(count=40)
    admins = await fault_lab.administrators()
    victim = admins["r0"]
    rooms = [room for room, admin in admins.items() if admin == victim]
    fault = fault_lab.mark(f"SIGKILL {victim} (administrator of {rooms})", rooms=rooms)
    cluster.kill_node(victim)
    await fault_lab.wait_acks(room="r0", after=fault.t, timeout=20)
    await fault_lab.hold(3)
    fault_lab.mark(f"restart {victim}", rooms=rooms)
    await cluster.restart_node(victim)
    await fault_lab.hold(4)
    result = await fault_lab.finish()
    result.assert_ok()
    assert (await fault_lab.administrators())["r0"] in cluster.node_ids
