"""Storage faults under load: a follower whose data directory is deleted,
and a node whose disk fills up (a tmpfs the test mounts and fills)."""

import pytest
from faults.harness import FaultLab
from support.smallfs import SmallFilesystem

pytestmark = pytest.mark.slow

# small tails and frequent snapshots, so that a few hundred messages of load
# fold the logs past what a restarted follower holds
COMPACT = ["--log-tail", "20", "--snapshot-every", "50"]


async def test_wipe_follower(fault_lab: FaultLab) -> None:
    """A node loses its database (a deleted volume) and restarts empty: its
    rooms fail over, and as a follower it is rebuilt by snapshot, with the
    history copied to it; its log then matches everyone's; nothing
    acknowledged is lost."""
    cluster = await fault_lab.start(store="sqlite", node_args=COMPACT)
    await fault_lab.start_load()
    await fault_lab.wait_acks(count=40)
    admins = await fault_lab.administrators()
    # The rooms are placed by hash, so every node may administer one: take
    # the node that administers fewest; its rooms must fail over in bound.
    victim = min(cluster.node_ids, key=lambda n: list(admins.values()).count(n))
    rooms = [room for room, admin in admins.items() if admin == victim]
    fault_lab.mark(f"SIGKILL {victim} and delete its data", rooms=rooms, bound=bool(rooms))
    cluster.kill_node(victim)
    for path in (cluster.tmp_path / "data" / victim).glob(f"{victim}.db*"):
        path.unlink()
    await fault_lab.hold(5)
    fault_lab.mark(f"restart {victim} empty", rooms=[], bound=False)
    await cluster.restart_node(victim)
    await fault_lab.hold(5)
    result = await fault_lab.finish()
    result.assert_ok()  # (the replica logs, the victim's included, match the history)
    assert "snapshot installed" in cluster.log_path(victim).read_text()


async def test_disk_full(fault_lab: FaultLab) -> None:
    """The disk under one node fills up while it administers rooms: it
    acknowledges nothing, its rooms fail over within the bound, and once
    the disk has room it catches up; nothing acknowledged is lost."""
    victim = "node-0"
    data = fault_lab.tmp_path / "cluster" / "data" / victim
    with SmallFilesystem(data, 32 * 2**20) as disk:
        cluster = await fault_lab.start(store="sqlite")
        await fault_lab.start_load()
        await fault_lab.wait_acks(count=40)
        admins = await fault_lab.administrators()
        rooms = [room for room, admin in admins.items() if admin == victim]
        fault_lab.mark(f"fill the disk under {victim} (administrator of {rooms})", rooms=rooms)
        disk.fill()
        await fault_lab.hold(8)
        fault_lab.mark(f"free the disk under {victim}", rooms=[], bound=False)
        disk.free()
        await fault_lab.hold(5)
        result = await fault_lab.finish()
        log = cluster.log_path(victim).read_text()
    result.assert_ok()
    assert "store full" in log and "store writable again" in log
