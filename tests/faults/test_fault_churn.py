"""Scenario 7: churn. A seeded random kill / pause / cut of one node about every second.

Faults: SIGKILL (restarted from its sqlite log when undone), SIGSTOP (SIGCONT),
isolate (bridge port down: cut from everyone) and partition (cut from the
other nodes only, so the gateway still reaches it). At most one node is
faulty at a time, so a majority of every room's replicas is always there.
"""

import os
import random
import time

import pytest
from faults.harness import FaultLab

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("PARLEY_FAULT_SEED", "7"))
"""Seed of the fault schedule; set PARLEY_FAULT_SEED to replay another one."""

CHURN_SECONDS = float(os.environ.get("PARLEY_CHURN_SECONDS", "60"))
"""How long the churn lasts."""

STEP_SECONDS = 1.0
"""A new fault about this often (a killed node's restart makes a step longer)."""


async def test_churn(fault_lab: FaultLab) -> None:
    """After a minute of random single-node faults and a heal, no invariant is broken."""
    rng = random.Random(SEED)
    print(f"[churn] seed={SEED} (PARLEY_FAULT_SEED)")
    cluster = await fault_lab.start(store="sqlite")
    await fault_lab.start_load()
    await fault_lab.wait_acks(count=40)
    current: tuple[str, str] | None = None  # (action, node): at most one node faulty at a time
    end = time.monotonic() + CHURN_SECONDS
    steps = 0
    while time.monotonic() < end:
        if current is not None:
            await undo(fault_lab, *current)
        action = rng.choice(["kill", "pause", "isolate", "partition", "none"])
        node = rng.choice(cluster.node_ids)
        current = None if action == "none" else (action, node)
        if current is not None:
            # Faults overlap (a new one every second): only the final heal is bound to 10 s.
            fault_lab.mark(f"{action} {node}", bound=False)
            if action == "kill":
                cluster.kill_node(node)
            elif action == "pause":
                cluster.pause_node(node)
            elif action == "isolate":
                fault_lab.net.isolate(node)
            else:
                fault_lab.net.partition([node], [n for n in cluster.node_ids if n != node])
        steps += 1
        await fault_lab.hold(STEP_SECONDS)
    fault_lab.mark("heal all")
    if current is not None:
        await undo(fault_lab, *current)
    await fault_lab.hold(5)
    result = await fault_lab.finish()
    churn = {label: t for label, t in result.recovery.items() if label != "heal all"}
    slowest = max((t for t in churn.values() if t is not None), default=0.0)
    print(f"[churn] {steps} steps, {len(churn)} faults, slowest recovery {slowest:.2f}s")
    result.assert_ok()


async def undo(lab: FaultLab, action: str, node: str) -> None:
    """Undo fault `action` on `node`: restart it, resume it, or reconnect it."""
    assert lab.cluster is not None
    if action == "kill":
        await lab.cluster.restart_node(node)
    elif action == "pause":
        lab.cluster.resume_node(node)
    elif action == "isolate":
        lab.net.heal(node)
    else:
        lab.net.heal_all()  # the partition's rules live in several hosts' namespaces
