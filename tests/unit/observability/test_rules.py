"""Alert rules pass promtool and their unit tests; the dashboard JSON is well formed."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "charts/parley/rules/parley-rules.yaml"
RULES_TEST = Path(__file__).with_name("rules_test.yaml")
DASHBOARD = ROOT / "charts/parley/dashboards/parley.json"
ALERTS = {
    "ParleyNodeDown",
    "ParleyNoAdministrator",
    "ParleyCommitLatencyHigh",
    "ParleyReplicationLagGrowing",
    "ParleyGatewayDisconnectStorm",
    "ParleyRoomsUnderReplicated",
    "ParleyStoreNotWritable",
    "ParleyArchiveLagging",
}
# DESIGN §6: the dashboard must show every one of these.
METRICS = {
    "parley_order_latency_seconds_bucket",
    "parley_commit_latency_seconds_bucket",
    "parley_delivery_latency_seconds_bucket",
    "parley_messages_committed_total",
    "parley_rooms",
    "parley_elections_total",
    "parley_replication_lag_entries",
    "parley_twopc_total",
    "parley_twopc_duration_seconds_bucket",
    "parley_room_moves_in_flight",
    "parley_rooms_under_replicated",
    "parley_snapshots_total",
    "parley_store_writable",
    "parley_peer_up",
    "parley_ws_connections",
    "parley_ws_frames_total",
    "parley_ws_disconnects_total",
    "parley_auth_failures_total",
    "parley_archive_lag_entries",
}


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is missing (Debian package prometheus)")
        pytest.skip("promtool is missing (Debian package prometheus)")
    return found


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_promtool_check_rules() -> None:
    """promtool accepts the rules file."""
    done = _run(_promtool(), "check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_rule_unit_tests() -> None:
    """Every alert fires and stays quiet where rules_test.yaml says."""
    done = _run(_promtool(), "test", "rules", str(RULES_TEST))
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_is_tested_and_documented() -> None:
    """Each alert has a severity, a summary, a runbook anchor in docs/operations.md and a test."""
    yaml = pytest.importorskip("yaml")
    rules = yaml.safe_load(RULES.read_text())
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"] if "alert" in r}
    assert set(alerts) == ALERTS
    tests = yaml.safe_load(RULES_TEST.read_text())
    tested = {t["alertname"] for case in tests["tests"] for t in case["alert_rule_test"]}
    assert tested == ALERTS
    fires = {
        t["alertname"]
        for case in tests["tests"]
        for t in case["alert_rule_test"]
        if t.get("exp_alerts")
    }
    assert fires == ALERTS
    anchors = {
        m.group(1).lower()
        for m in re.finditer(
            r"^#+ .*?\b(Parley\w+)\b", (ROOT / "docs/operations.md").read_text(), re.M
        )
    }
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert rule["annotations"]["runbook_url"] == f"docs/operations.md#{name.lower()}"
        assert name.lower() in anchors, f"no runbook section for {name}"
        # Plain Prometheus has no namespace label: never select on it.
        assert 'namespace="' not in rule["expr"] and "namespace=~" not in rule["expr"]


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in dashboard["panels"]:
        out.extend(panel.get("panels", []))
        if panel["type"] != "row":
            out.append(panel)
    return out


def test_dashboard_structure() -> None:
    """Every panel has a title, a unit and targets whose expr filters on $namespace."""
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["namespace"]["includeAll"] and variables["namespace"]["allValue"] == ".*"
    panels = _panels(dashboard)
    assert panels
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    seen: set[str] = set()
    for panel in panels:
        assert panel["title"], panel
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["fieldConfig"]["defaults"]["unit"], panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            assert expr and target["refId"], panel["title"]
            selectors = re.findall(r"(parley_\w+)(\{[^}]*\})?", expr)
            for metric, labels in selectors:
                assert 'namespace=~"$namespace"' in labels, f"{panel['title']}: {metric}"
                seen.add(metric)
    assert seen >= METRICS
