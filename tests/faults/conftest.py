"""Fixtures for the fault suite: `fault_lab`, a FaultLab whose hosts are always deleted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from faults.harness import RESULTS, FaultLab
from support.netns import NetLab, require_netns, sweep_stale


@pytest.fixture
async def fault_lab(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[FaultLab]:
    """A FaultLab named after the test; processes stopped, namespaces deleted, logs on failure."""
    require_netns()
    sweep_stale()
    net = NetLab()
    lab = FaultLab(tmp_path, net, request.node.name.removeprefix("test_"), request.node.nodeid)
    try:
        yield lab
    finally:
        try:
            await lab.close()
        finally:
            net.close()
        failed = any(
            getattr(getattr(request.node, f"rep_{when}", None), "failed", False)
            for when in ("setup", "call")
        )
        if failed:
            if lab.cluster is not None:
                print(lab.cluster.dump_logs(lines=40))
            agent_log = tmp_path / "agent.log"
            if agent_log.exists():
                print("----- agent -----")
                print("\n".join(agent_log.read_text(errors="replace").splitlines()[-60:]))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """After the run, the scenarios' results as a markdown table (for docs/faults.md)."""
    if not RESULTS:
        return
    terminalreporter.section("fault scenarios")
    terminalreporter.write_line(
        "| scenario | sent | acked | delivered | recovery (s) | longest ack gap (s) "
        "| ack p99 (ms) | invariants | command |"
    )
    terminalreporter.write_line("|---|---|---|---|---|---|---|---|---|")
    for row in RESULTS:
        terminalreporter.write_line(row)
