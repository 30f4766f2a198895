"""Scenario 3: SIGKILL every node at once (sqlite store), restart them all."""

import asyncio

import pytest
from faults.harness import FaultLab

pytestmark = pytest.mark.slow


async def test_kill_every_node(fault_lab: FaultLab) -> None:
    """After every node dies and restarts from its sqlite log, nothing acknowledged is lost."""
    cluster = await fault_lab.start(store="sqlite")
    await fault_lab.start_load()
    await fault_lab.wait_acks(count=60)
    # While every node is down nothing can be acked: recovery counts from the restart.
    fault_lab.mark("SIGKILL every node", bound=False)
    for node_id in cluster.node_ids:
        cluster.kill_node(node_id)
    await fault_lab.hold(2)
    fault_lab.mark("restart every node")
    await asyncio.gather(*(cluster.restart_node(n) for n in cluster.node_ids))
    await fault_lab.hold(5)
    result = await fault_lab.finish()
    result.assert_ok()
