"""Scenario 1: no fault. The baseline every other scenario is compared with."""

import pytest
from faults.harness import FaultLab

pytestmark = pytest.mark.slow


async def test_baseline(fault_lab: FaultLab) -> None:
    """Without faults, every ack is delivered once, in order, to every member, and stored."""
    await fault_lab.start()
    await fault_lab.start_load()
    await fault_lab.hold(8)
    result = await fault_lab.finish()
    result.assert_ok()
    assert result.report.unknown == 0 and result.report.errors == 0, result.report.summary()
