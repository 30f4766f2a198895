"""Scenario 5: cut a room's administrator off from the other nodes with network namespaces."""

import pytest
from faults.harness import FaultLab

pytestmark = pytest.mark.slow


async def test_partition_administrator(fault_lab: FaultLab) -> None:
    """The cut-off minority acks nothing, the majority goes on; every replica's log agrees after."""
    cluster = await fault_lab.start(store="sqlite")
    await fault_lab.start_load()
    await fault_lab.wait_acks(count=40)
    admins = await fault_lab.administrators()
    victim = admins["r0"]
    others = [n for n in cluster.node_ids if n != victim]
    rooms = [room for room, admin in admins.items() if admin == victim]
    # Only node <-> node traffic is cut: the gateway still reaches the old administrator,
    # which must not acknowledge anything it cannot replicate to a majority.
    fault = fault_lab.mark(
        f"cut {victim} off from {others} (administrator of {rooms})", rooms=rooms
    )
    fault_lab.net.partition([victim], others)
    await fault_lab.wait_acks(room="r0", after=fault.t, timeout=20)
    await fault_lab.hold(6)
    fault_lab.mark(f"heal {victim}", rooms=rooms)
    fault_lab.net.heal_all()
    await fault_lab.hold(5)
    result = await fault_lab.finish()
    result.assert_ok()
    assert (await fault_lab.administrators())["r0"] in cluster.node_ids


async def test_isolate_administrator(fault_lab: FaultLab) -> None:
    """An administrator whose host is unplugged (bridge port down) is replaced; nothing is lost."""
    cluster = await fault_lab.start(store="sqlite")
    await fault_lab.start_load()
    await fault_lab.wait_acks(count=40)
    admins = await fault_lab.administrators()
    victim = admins["r0"]
    rooms = [room for room, admin in admins.items() if admin == victim]
    fault = fault_lab.mark(f"isolate {victim} (administrator of {rooms})", rooms=rooms)
    fault_lab.net.isolate(victim)
    await fault_lab.wait_acks(room="r0", after=fault.t, timeout=20)
    await fault_lab.hold(5)
    fault_lab.mark(f"heal {victim}", rooms=rooms)
    fault_lab.net.heal_all()
    await fault_lab.hold(5)
    result = await fault_lab.finish()
    result.assert_ok()
    assert (await fault_lab.administrators())["r0"] in cluster.node_ids


async def test_gateway_cut_from_administrator(fault_lab: FaultLab) -> None:
    """With only the gateway's host cut from r0's administrator (nobody is elected: the
    nodes still reach it), another replica relays and r0 recovers within 10 s."""
    await fault_lab.start()
    await fault_lab.start_load()
    await fault_lab.wait_acks(count=40)
    admins = await fault_lab.administrators()
    victim = admins["r0"]
    rooms = [room for room, admin in admins.items() if admin == victim]
    fault_lab.mark(f"cut the client host from {victim} (administrator of {rooms})", rooms=rooms)
    fault_lab.net.block("client", [victim])
    await fault_lab.hold(12)
    fault_lab.mark(f"heal {victim}", rooms=rooms)
    fault_lab.net.heal_all()
    await fault_lab.hold(4)
    result = await fault_lab.finish()
    result.assert_ok()
