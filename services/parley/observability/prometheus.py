"""A local Prometheus for `parley up --prometheus` and the observability tests.

It scrapes every node (job ``parley-node``) and gateway (job
``parley-gateway``), evaluates the chart's alert rules, and listens on
127.0.0.1 only. Needs the ``prometheus`` binary (Debian package
``prometheus``); without it start_prometheus() returns None.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

NODE_JOB = "parley-node"
"""Job name of node targets."""
GATEWAY_JOB = "parley-gateway"
"""Job name of gateway targets."""

# The repository's rules file, present in a source checkout (not in a wheel).
_REPO_RULES = Path(__file__).resolve().parents[3] / "charts/parley/rules/parley-rules.yaml"


def default_rules_files() -> list[str]:
    """The chart's alert rules when running from a source checkout, else []."""
    return [str(_REPO_RULES)] if _REPO_RULES.is_file() else []


def write_config(
    path: str | Path,
    targets: Mapping[str, Sequence[str]],
    rules_files: Sequence[str],
    scrape_interval: str = "1s",
) -> None:
    """Write a prometheus.yml scraping `targets` and loading `rules_files`.

    Args:
        path: the file to write (JSON, which is valid YAML; parents must exist).
        targets: job name → ``host:port`` HTTP addresses serving /metrics,
            e.g. ``{"parley-node": ["127.0.0.1:9101"], "parley-gateway": [...]}``.
        rules_files: rule file paths (absolute, or relative to `path`).
        scrape_interval: a Prometheus duration; rules are evaluated as often.
    """
    config = {
        "global": {
            "scrape_interval": scrape_interval,
            "scrape_timeout": scrape_interval,
            "evaluation_interval": scrape_interval,
        },
        "rule_files": [str(f) for f in rules_files],
        "scrape_configs": [
            {
                "job_name": job,
                "metrics_path": "/metrics",
                "static_configs": [{"targets": list(addresses)}],
            }
            for job, addresses in targets.items()
        ],
    }
    Path(path).write_text(json.dumps(config, indent=2) + "\n")


async def start_prometheus(
    data_dir: str | Path,
    targets: Mapping[str, Sequence[str]],
    port: int,
    *,
    rules_files: Sequence[str] | None = None,
    scrape_interval: str = "1s",
    binary: str = "prometheus",
) -> asyncio.subprocess.Process | None:
    """Start Prometheus on 127.0.0.1:`port` scraping `targets`.

    Writes ``prometheus.yml`` into `data_dir`, keeps the TSDB in
    ``data_dir/prometheus`` and the server's own log in
    ``data_dir/prometheus.log``. The lifecycle API is on (``POST
    /-/reload`` re-reads the config after write_config(), ``POST /-/quit``
    stops it). The caller owns the process: ``terminate()`` and ``wait()``
    it on shutdown. Use wait_ready() before querying.

    Args:
        data_dir: a directory for config, data and log (created if missing).
        targets: job name → ``host:port`` list, as for write_config().
        port: the port for the UI and HTTP API.
        rules_files: alert rule files; None means default_rules_files().
        scrape_interval: how often to scrape and evaluate rules.
        binary: the executable's name or path.

    Returns:
        The running process, or None when the binary is not installed.
    """
    executable = shutil.which(binary)
    if executable is None:
        return None
    config, tsdb, log = await asyncio.to_thread(
        _prepare, Path(data_dir), targets, rules_files, scrape_interval
    )
    try:
        return await asyncio.create_subprocess_exec(
            executable,
            f"--config.file={config}",
            f"--storage.tsdb.path={tsdb}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
            "--storage.tsdb.retention.time=1d",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    finally:
        log.close()  # the child has its own copy of the descriptor


def _prepare(
    data_dir: Path,
    targets: Mapping[str, Sequence[str]],
    rules_files: Sequence[str] | None,
    scrape_interval: str,
) -> tuple[Path, Path, BinaryIO]:
    """Create the directories, write the config, open the log (blocking I/O)."""
    root = data_dir.resolve()
    tsdb = root / "prometheus"
    tsdb.mkdir(parents=True, exist_ok=True)
    config = root / "prometheus.yml"
    rules = default_rules_files() if rules_files is None else list(rules_files)
    write_config(config, targets, rules, scrape_interval)
    return config, tsdb, (root / "prometheus.log").open("ab")


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


async def wait_ready(port: int, timeout: float = 30.0) -> bool:
    """Wait until the Prometheus on 127.0.0.1:`port` answers /-/ready.

    Returns:
        True once ready; False when `timeout` seconds passed first.
    """
    url = f"http://127.0.0.1:{port}/-/ready"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        if await asyncio.to_thread(_ready, url):
            return True
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.1)
