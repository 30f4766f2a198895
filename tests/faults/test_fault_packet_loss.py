"""Scenario 6: random packet loss between the nodes (nft numgen), and slow links.

There is no netem here, so no fixed delay; a tbf-throttled link delays by queueing instead.
"""

import pytest
from faults.harness import FaultLab

pytestmark = pytest.mark.slow

LOSS_PERCENT = 25
LOSS_SECONDS = 12.0


async def test_packet_loss_between_nodes(fault_lab: FaultLab) -> None:
    """With 25% of node-to-node packets dropped the rooms stay consistent and keep going."""
    cluster = await fault_lab.start()
    await fault_lab.start_load()
    await fault_lab.wait_acks(count=40)
    fault_lab.mark(f"drop {LOSS_PERCENT}% of node<->node packets")
    for node_id in cluster.node_ids:
        peers = [n for n in cluster.node_ids if n != node_id]
        fault_lab.net.loss(node_id, LOSS_PERCENT, peers)
    await fault_lab.hold(LOSS_SECONDS)
    fault_lab.mark("stop dropping")
    fault_lab.net.heal_all()
    await fault_lab.hold(3)
    result = await fault_lab.finish()
    result.assert_ok()


THROTTLE_KBIT = 128
"""Each node's outgoing bandwidth in the slow-link test: queueing delay under load."""


async def test_slow_lossy_links(fault_lab: FaultLab) -> None:
    """Nodes behind slow (tbf-throttled) links that also lose 10% stay consistent."""
    cluster = await fault_lab.start()
    await fault_lab.start_load()
    await fault_lab.wait_acks(count=40)
    fault_lab.mark(f"throttle nodes to {THROTTLE_KBIT} kbit/s, drop 10% node<->node")
    for node_id in cluster.node_ids:
        fault_lab.net.throttle(node_id, THROTTLE_KBIT, latency_ms=250)
        fault_lab.net.loss(node_id, 10, [n for n in cluster.node_ids if n != node_id])
    await fault_lab.hold(LOSS_SECONDS)
    fault_lab.mark("unthrottle")
    fault_lab.net.heal_all()
    await fault_lab.hold(3)
    result = await fault_lab.finish()
    result.assert_ok()
