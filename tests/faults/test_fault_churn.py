"""Scenario 7: churn. Seeded random faults about every second, then heal and verify.

Node faults: SIGKILL (restarted from its sqlite log when undone), SIGSTOP
(SIGCONT), isolate (bridge port down: cut from everyone) and partition (cut
from the other nodes only, so the gateways still reach it). Gateway fault:
SIGKILL one of the two gateways and restart it at once (its clients move to
the other one). `test_churn` keeps at most one node faulty at a time, so a
majority of every room's replicas is always there; `test_churn_overlapping`
allows two (no majority: rooms stall, but nothing may break).
"""

import os
import random
import time

import pytest
from faults.harness import FaultLab

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("PARLEY_FAULT_SEED", "7"))
"""Seed of the fault schedules; set PARLEY_FAULT_SEED to replay another one."""

CHURN_SECONDS = float(os.environ.get("PARLEY_CHURN_SECONDS", "60"))
"""How long test_churn's churn lasts (test_churn_overlapping: a third of it)."""

STEP_SECONDS = 1.0
"""A new fault about this often (a killed node's restart makes a step longer)."""

NODE_FAULTS = ("kill", "pause", "isolate", "partition")


async def test_churn(fault_lab: FaultLab) -> None:
    """After a minute of random single-node and gateway faults and a heal, no invariant broke."""
    await churn(fault_lab, random.Random(SEED), CHURN_SECONDS, max_faulty=1)


async def test_churn_overlapping(fault_lab: FaultLab) -> None:
    """With up to two of three nodes faulty at once, nothing acked is lost, nothing diverges."""
    await churn(fault_lab, random.Random(SEED + 1), CHURN_SECONDS / 3, max_faulty=2)


async def churn(lab: FaultLab, rng: random.Random, seconds: float, max_faulty: int) -> None:
    """Run the load, inject random faults for `seconds`, heal everything, check the record."""
    print(f"[{lab.name}] seed={SEED} (PARLEY_FAULT_SEED) max_faulty={max_faulty}")
    cluster = await lab.start(store="sqlite", gateways=2)
    await lab.start_load()
    await lab.wait_acks(count=40)
    faulty: dict[str, str] = {}  # node -> the fault it is under
    end = time.monotonic() + seconds
    steps = 0
    while time.monotonic() < end:
        if faulty and (len(faulty) >= max_faulty or rng.random() < 0.6):
            node = rng.choice(sorted(faulty))
            await undo(lab, node, faulty.pop(node), faulty)
        action = rng.choice([*NODE_FAULTS, "gateway", "none"])
        healthy = [n for n in cluster.node_ids if n not in faulty]
        # Faults overlap (a new one every second): only the final heal is bound to 10 s.
        if action == "gateway":
            i = rng.randrange(len(cluster.gateway_names))
            lab.mark(f"kill gateway-{i}", bound=False)
            cluster.kill_gateway(i)
            await cluster.restart_gateway(i)
        elif action in NODE_FAULTS and len(faulty) < max_faulty:
            node = rng.choice(healthy)
            lab.mark(f"{action} {node}", bound=False)
            faulty[node] = action
            if action == "kill":
                cluster.kill_node(node)
            elif action == "pause":
                cluster.pause_node(node)
            elif action == "isolate":
                lab.net.isolate(node)
            else:
                lab.net.partition([node], [n for n in cluster.node_ids if n != node])
        steps += 1
        await lab.hold(STEP_SECONDS)
    lab.mark("heal all")
    for node in sorted(faulty):
        await undo(lab, node, faulty.pop(node), faulty)
    await lab.hold(5)
    result = await lab.finish(drain=40)
    churned = [t for label, t in result.recovery.items() if label != "heal all"]
    slowest = max((t for t in churned if t is not None), default=0.0)
    print(f"[{lab.name}] {steps} steps, {len(churned)} faults, slowest recovery {slowest:.2f}s")
    result.assert_ok()


async def undo(lab: FaultLab, node: str, action: str, still: dict[str, str]) -> None:
    """Undo fault `action` on `node`, keeping the faults in `still` in place."""
    assert lab.cluster is not None
    if action == "kill":
        await lab.cluster.restart_node(node)
    elif action == "pause":
        lab.cluster.resume_node(node)
    else:
        # heal_all() resets bridge ports and every nft table; re-apply the cuts that stay.
        lab.net.heal_all()
        for other, fault in still.items():
            if fault == "isolate":
                lab.net.isolate(other)
            elif fault == "partition":
                lab.net.partition([other], [n for n in lab.cluster.node_ids if n != other])
