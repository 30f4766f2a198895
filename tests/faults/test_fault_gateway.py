"""Scenario 8: SIGKILL one of two gateways; its clients move to the other one."""

import pytest
from faults.harness import FaultLab

pytestmark = pytest.mark.slow


async def test_kill_gateway(fault_lab: FaultLab) -> None:
    """Clients of a killed gateway rejoin the other with `since` and see no gap and no duplicate."""
    cluster = await fault_lab.start(gateways=2)
    await fault_lab.start_load()
    await fault_lab.wait_acks(count=40)
    moved = fault_lab.users[0::2]  # the agent spreads users over the gateways round robin
    fault_lab.mark("SIGKILL gateway-0", clients=moved)
    cluster.kill_gateway(0)
    await fault_lab.hold(5)
    fault_lab.mark("restart gateway-0")
    await cluster.restart_gateway(0)
    await fault_lab.hold(3)
    result = await fault_lab.finish()
    result.assert_ok()
    assert all(result.reconnects[user] >= 1 for user in moved), result.reconnects
