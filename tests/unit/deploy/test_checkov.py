"""checkov's Kubernetes policies pass on the rendered chart; every skip says why.

checkov looks for updates and policy mappings online on start; it runs here
with those off, inside `unshare -n` (no network at all), as the issue asks.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml
from deploy_helpers import VALUE_SETS, need, render_texts

CHECKOV_ENV = {"BC_SKIP_MAPPING": "TRUE", "CKV_SKIP_PACKAGE_UPDATE_CHECK": "TRUE"}
SETS = ["defaults", "auth-jwks", "tls", "archive", "monitoring-on", "ingress-on", "hpa-on"]


def _checkov() -> list[str]:
    checkov = shutil.which("checkov")
    need(checkov is not None, "checkov is not installed (.ci/run installs it)")
    unshare = shutil.which("unshare")
    need(unshare is not None, "unshare (util-linux) is needed to run checkov offline")
    assert checkov and unshare
    probe = subprocess.run([unshare, "-n", "true"], capture_output=True, check=False)
    need(probe.returncode == 0, "unshare -n is not permitted here")
    return [unshare, "-n", checkov]


def _run(objects_yaml: str, tmp_path: Path) -> dict[str, Any]:
    manifest = tmp_path / "chart.yaml"
    manifest.write_text(objects_yaml)
    done = subprocess.run(
        [*_checkov(), "-f", str(manifest), "--framework", "kubernetes", "--skip-download",
         "--output", "json"],
        capture_output=True, text=True, check=False, timeout=240, cwd=tmp_path,
        env={**os.environ, **CHECKOV_ENV},
    )  # fmt: skip
    assert done.stdout.strip(), done.stderr[-2000:]
    report = json.loads(done.stdout)
    return report[0] if isinstance(report, list) else report


def _rendered(values: dict[str, Any], namespace: str = "parley") -> str:
    texts = render_texts(values, namespace=namespace)
    return "\n---\n".join(t for path, t in sorted(texts.items()) if path.endswith(".yaml"))


def test_checkov_kubernetes_policies_pass(tmp_path: Path) -> None:
    """Every value set users switch, each in a namespace of its own, in one run."""
    everything = "\n---\n".join(_rendered(VALUE_SETS[name], f"set-{name}") for name in SETS)
    report = _run(everything, tmp_path)
    failed = [
        (c["check_id"], c["check_name"], c["resource"]) for c in report["results"]["failed_checks"]
    ]
    assert not failed, failed
    assert report["results"]["passed_checks"]
    for skipped in report["results"]["skipped_checks"]:
        # a reason, not just an id
        reason = skipped["check_result"].get("suppress_comment") or ""
        assert len(reason) > 20, skipped


def test_a_planted_weakness_is_caught(tmp_path: Path) -> None:
    """The run is real: a privileged gateway fails."""
    objects = [
        yaml.safe_load(t)
        for t in _rendered(VALUE_SETS["defaults"]).split("\n---\n")
        if t.strip() and yaml.safe_load(t)
    ]
    for obj in objects:
        if obj["kind"] == "Deployment":
            container = obj["spec"]["template"]["spec"]["containers"][0]
            container["securityContext"]["privileged"] = True
            container["securityContext"]["allowPrivilegeEscalation"] = True
    report = _run(yaml.safe_dump_all(objects), tmp_path)
    failed = {c["check_id"] for c in report["results"]["failed_checks"]}
    assert {"CKV_K8S_16", "CKV_K8S_20"} <= failed
