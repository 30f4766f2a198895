"""Dashboard and alert queries against a real Prometheus scraping a real cluster.

Every panel query of charts/parley/dashboards/parley.json and every alert
expression of charts/parley/rules/parley-rules.yaml goes through Prometheus'
HTTP API: each must be valid PromQL, and those the traffic (and a failover)
should light up must return data.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from parley.observability import prometheus
from support.client import ChatClient
from support.cluster import LocalCluster
from support.wait import wait_for

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "charts/parley/dashboards/parley.json"
RULES = ROOT / "charts/parley/rules/parley-rules.yaml"
RATE_INTERVAL = "15s"
"""What Grafana's $__rate_interval becomes here (scrapes are 1 s apart)."""

# Panels the test traffic must light up (the rest need room moves or disconnects).
LIT_BEFORE_FAILOVER = {
    "Messages committed",
    "Open WebSocket connections",
    "Commit latency p99",
    "Nodes seen down",
    "Publish rate",
    "Delivery rate",
    "WebSocket connections",
    "Ordering latency",
    "Commit latency",
    "Delivery latency",
    "Rooms per node by role",
    "Peers up",
    "Replication lag",
}
LIT_AFTER_FAILOVER = {"Elections by outcome"}


def _require_prometheus() -> None:
    if shutil.which("prometheus") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("prometheus is missing (Debian package prometheus)")
        pytest.skip("prometheus is missing (Debian package prometheus)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Prom:
    """A few calls of the Prometheus HTTP API on 127.0.0.1."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def _get(self, path: str, **params: str) -> Any:
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:  # 400 for bad PromQL carries JSON
            return json.loads(error.read())

    async def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector of `expr`; fails the test when it does not parse."""
        answer = await asyncio.to_thread(self._get, "/api/v1/query", query=expr)
        assert answer["status"] == "success", f"{expr}\n{answer.get('error')}"
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    async def values(self, expr: str) -> dict[str, float]:
        """`expr`'s samples by instance label (or "" when it has none)."""
        return {
            r["metric"].get("instance", ""): float(r["value"][1]) for r in await self.query(expr)
        }


def _panel_queries() -> dict[str, list[str]]:
    """Panel title → its queries, with the dashboard variables filled in."""
    dashboard = json.loads(DASHBOARD.read_text())
    queries: dict[str, list[str]] = {}
    for panel in dashboard["panels"]:
        for p in [*panel.get("panels", []), panel]:
            if p["type"] == "row":
                continue
            queries[p["title"]] = [
                t["expr"].replace("$namespace", ".*").replace("$__rate_interval", RATE_INTERVAL)
                for t in p["targets"]
            ]
    return queries


def _alert_exprs() -> dict[str, str]:
    yaml = pytest.importorskip("yaml")
    rules = yaml.safe_load(RULES.read_text())
    return {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"] if "alert" in r}


async def _lit(prom: Prom, queries: list[str]) -> bool:
    """True when some query returns a sample that is a number (not NaN)."""
    for expr in queries:
        for series in await prom.query(expr):
            if series["value"][1] not in ("NaN", "+Inf", "-Inf"):
                return True
    return False


@pytest.fixture
async def observed(
    make_cluster: Callable[..., Awaitable[LocalCluster]], tmp_path: Path
) -> AsyncIterator[tuple[LocalCluster, Prom]]:
    """A 3-node, 1-gateway cluster scraped every second by a real Prometheus."""
    _require_prometheus()
    cluster = await make_cluster(nodes=3, gateways=1)
    targets = {
        prometheus.NODE_JOB: [cluster.node_http(n) for n in cluster.node_ids],
        prometheus.GATEWAY_JOB: [
            cluster.gateway_http(i) for i in range(len(cluster.gateway_names))
        ],
    }
    port = _free_port()
    process = await prometheus.start_prometheus(
        tmp_path / "prom", targets, port, rules_files=[str(RULES)]
    )
    assert process is not None
    try:
        ready = await prometheus.wait_ready(port, timeout=30)
        assert ready, (tmp_path / "prom/prometheus.log").read_text()
        yield cluster, Prom(port)
    finally:
        process.terminate()
        await process.wait()


async def _all_parse(prom: Prom, panels: dict[str, list[str]], alerts: dict[str, str]) -> None:
    """Run every panel query and alert expression; Prom.query fails on bad PromQL."""
    for expr in [*(e for queries in panels.values() for e in queries), *alerts.values()]:
        await prom.query(expr)


async def _send_until_acked(client: ChatClient, room: str, text: str, msg_id: str) -> None:
    """Send (retrying the same id while the room fails over) until acknowledged."""

    async def attempt() -> bool:
        reply = await client.send(room, text, msg_id)
        return reply["type"] == "ack"

    await wait_for(attempt, timeout=30, interval=0.2, message=f"an ack for {msg_id}")


async def _keep_sending(client: ChatClient, room: str) -> None:
    """Publish a message every 0.1 s until cancelled; errors (failover) are fine."""
    for i in itertools.count():
        with contextlib.suppress(TimeoutError):
            await client.send(room, f"background {i}", f"bg{i}")
        await asyncio.sleep(0.1)


async def test_dashboard_and_alerts_against_live_cluster(
    observed: tuple[LocalCluster, Prom],
) -> None:
    """Every dashboard and alert query is valid PromQL; traffic and a failover light them up."""
    cluster, prom = observed
    room = "observed"
    async with await ChatClient.connect(cluster.gateway_url(), "alice") as alice:
        await alice.create(room)
        await alice.join(room)
        for i in range(30):
            await _send_until_acked(alice, room, f"message {i}", f"m{i}")
        # Rates and quantiles need traffic inside their window while we look.
        traffic = asyncio.create_task(_keep_sending(alice, room))
        try:
            await _check(cluster, prom, alice, room)
        finally:
            traffic.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await traffic


async def _check(cluster: LocalCluster, prom: Prom, alice: ChatClient, room: str) -> None:
    """The assertions, while traffic flows."""
    panels = _panel_queries()
    alerts = _alert_exprs()
    # Every query parses; those the traffic exercises return data.
    await _all_parse(prom, panels, alerts)

    async def dark_panels() -> set[str]:
        return {t for t in LIT_BEFORE_FAILOVER if not await _lit(prom, panels[t])}

    async def all_lit() -> bool:
        return not await dark_panels()

    try:
        await wait_for(all_lit, timeout=30, interval=0.5, message="panels with data")
    except TimeoutError:
        pytest.fail(f"panels without data: {sorted(await dark_panels())}")
    p99 = await prom.query(
        "histogram_quantile(0.99, sum by (le) (rate(parley_commit_latency_seconds_bucket[1m])))"
    )
    assert float(p99[0]["value"][1]) > 0
    assert await prom.query("ALERTS") == []

    # Failover: SIGKILL the room's administrator.
    listing = await alice.rooms()
    (entry,) = [r for r in listing["rooms"] if r["room"] == room]
    victim = entry["administrator"]
    survivors = [cluster.node_http(n) for n in cluster.node_ids if n != victim]
    won = 'parley_elections_total{job="parley-node", outcome="won"}'
    before = await prom.values(won)
    cluster.kill_node(victim)

    for i in range(30, 35):
        await _send_until_acked(alice, room, f"message {i}", f"m{i}")

    async def elections_rose() -> bool:
        after = await prom.values(won)
        return any(after.get(s, 0) > before.get(s, 0) for s in survivors)

    await wait_for(elections_rose, timeout=30, interval=0.5, message="a won election")

    async def node_down_alert() -> list[dict[str, Any]]:
        return await prom.query('ALERTS{alertname="ParleyNodeDown"}')

    await wait_for(node_down_alert, timeout=30, interval=0.5, message="ParleyNodeDown")
    down = await prom.query(alerts["ParleyNodeDown"])
    victim_http = cluster.node_http(victim)
    assert any(
        s["metric"].get("instance") == victim_http or s["metric"].get("peer") == victim
        for s in down
    ), down

    for title in LIT_AFTER_FAILOVER:
        await wait_for(
            lambda t=title: _lit(prom, panels[t]), timeout=30, interval=0.5, message=title
        )
    # And everything still parses with a node gone.
    await _all_parse(prom, panels, alerts)
