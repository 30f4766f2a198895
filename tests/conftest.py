"""Shared test setup: tests/ on sys.path, and the local-cluster fixtures.

Fixtures:
    make_cluster: factory `await make_cluster(nodes=5, store="sqlite", ...)`
        returning a started LocalCluster (any LocalCluster keyword works);
        every cluster it made is stopped after the test, and when the test
        failed the processes' log tails are printed (pytest shows them).
    cluster: a started LocalCluster of 3 nodes and 1 gateway (memory store).
"""

import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from support.cluster import LocalCluster  # after the sys.path line above


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    """Remember each phase's report on the item, so fixtures can tell a failed test."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def _failed(request: pytest.FixtureRequest) -> bool:
    """True when the requesting test's setup or call failed."""
    return any(
        getattr(getattr(request.node, f"rep_{when}", None), "failed", False)
        for when in ("setup", "call")
    )


@pytest.fixture
async def make_cluster(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Callable[..., Awaitable[LocalCluster]]]:
    """A factory for started LocalClusters, all stopped (logs shown on failure) after the test."""
    made: list[LocalCluster] = []

    async def factory(**kwargs: Any) -> LocalCluster:
        cluster = LocalCluster(tmp_path / f"cluster{len(made)}", **kwargs)
        made.append(cluster)  # before start(): a failed start is stopped too
        await cluster.start()
        return cluster

    try:
        yield factory
    finally:
        for cluster in made:
            await cluster.stop()
        if _failed(request):
            for cluster in made:
                print(cluster.dump_logs())


@pytest.fixture
async def cluster(make_cluster: Callable[..., Awaitable[LocalCluster]]) -> LocalCluster:
    """A started local cluster: 3 nodes (memory store) and 1 gateway."""
    return await make_cluster()
