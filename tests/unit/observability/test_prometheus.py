"""The local Prometheus: config file, and a real server scraping a real /metrics."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from parley.observability import metrics, prometheus
from parley.observability.http import serve_http


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _require_prometheus() -> None:
    if shutil.which("prometheus") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("prometheus is missing (Debian package prometheus)")
        pytest.skip("prometheus is missing (Debian package prometheus)")


def _get(port: int, path: str, **params: str) -> Any:
    url = f"http://127.0.0.1:{port}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def test_write_config(tmp_path: Path) -> None:
    """write_config writes one job per key with its targets, rules and intervals."""
    path = tmp_path / "prometheus.yml"
    prometheus.write_config(
        path,
        {"parley-node": ["127.0.0.1:9101", "127.0.0.1:9102"], "parley-gateway": ["127.0.0.1:9200"]},
        ["/rules/parley-rules.yaml"],
        scrape_interval="2s",
    )
    config = json.loads(path.read_text())  # JSON is valid YAML
    assert config["global"]["scrape_interval"] == "2s"
    assert config["global"]["evaluation_interval"] == "2s"
    assert config["rule_files"] == ["/rules/parley-rules.yaml"]
    jobs = {j["job_name"]: j["static_configs"][0]["targets"] for j in config["scrape_configs"]}
    assert jobs == {
        "parley-node": ["127.0.0.1:9101", "127.0.0.1:9102"],
        "parley-gateway": ["127.0.0.1:9200"],
    }


def test_default_rules_are_the_charts() -> None:
    """From a checkout, the default rules file is the chart's."""
    assert [Path(p).name for p in prometheus.default_rules_files()] == ["parley-rules.yaml"]


async def test_missing_binary_returns_none(tmp_path: Path) -> None:
    """start_prometheus returns None when the binary is not installed."""
    started = await prometheus.start_prometheus(
        tmp_path, {"parley-node": []}, _free_port(), binary="no-such-prometheus-binary"
    )
    assert started is None


async def test_scrapes_targets_and_loads_rules(tmp_path: Path) -> None:
    """A started Prometheus scrapes a real /metrics endpoint and loads the alert rules."""
    _require_prometheus()
    metrics.MESSAGES_COMMITTED.inc(0)
    server = await serve_http("127.0.0.1:0", ready=lambda: True)
    target = f"127.0.0.1:{next(iter(server.sockets)).getsockname()[1]}"
    port = _free_port()
    process = await prometheus.start_prometheus(tmp_path, {prometheus.NODE_JOB: [target]}, port)
    assert process is not None
    try:
        assert await prometheus.wait_ready(port, timeout=30), (
            tmp_path / "prometheus.log"
        ).read_text()
        query = 'up{job="parley-node"} == 1 and on (instance) parley_messages_committed_total'
        for _ in range(300):  # scrapes every second; give it up to ~30 s
            result = await asyncio.to_thread(_get, port, "/api/v1/query", query=query)
            if result["data"]["result"]:
                break
            await asyncio.sleep(0.1)
        assert result["data"]["result"][0]["metric"]["instance"] == target
        rules = await asyncio.to_thread(_get, port, "/api/v1/rules")
        names = {r["name"] for g in rules["data"]["groups"] for r in g["rules"]}
        assert "ParleyNodeDown" in names
    finally:
        process.terminate()
        await process.wait()
        server.close()
        await server.wait_closed()
