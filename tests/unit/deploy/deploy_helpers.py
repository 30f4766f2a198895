"""Shared helpers for the deployment tests: render the chart, walk pod specs.

The chart is rendered with helm-python-sdk, Helm's own Go code behind a C
ABI, so no helm binary, cluster or network is needed.
"""

from __future__ import annotations

import copy
import functools
import importlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "parley"
K8S = ROOT / "k8s"
SHARED = (ROOT / ".." / "shared").resolve()
SCHEMAS = SHARED / "schemas"
RELEASE = "parley"
NAMESPACE = "chat"
KUBE_VERSIONS = ("1.27.0", "1.30.0", "1.37.0")

IN_CI = os.environ.get("CI") == "true"

# Value sets every chart test runs against (DESIGN §1: what users switch).
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "five-nodes": {"node": {"replicaCount": 5}},
    "persistence-off": {"node": {"persistence": {"enabled": False}, "store": "memory"}},
    "auth-on": {"auth": {"enabled": True, "jwtSecret": "s3cret-for-tests"}},
    "auth-existing-secret": {"auth": {"enabled": True, "existingSecret": "my-jwt"}},
    "auth-off": {"auth": {"enabled": False}},
    "auth-jwks": {
        "auth": {
            "jwks": {"configMap": "idp-keys", "key": "keys.json"},
            "issuer": "https://id.example.com",
            "audience": "parley",
            "leewaySeconds": 10,
        }
    },
    "tls": {"tls": {"enabled": True, "secretName": "parley-mtls"}},
    "archive": {"archive": {"existingSecret": "chat-archive"}},
    "monitoring-on": {
        "monitoring": {
            "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
            "podMonitor": {"enabled": True},
            "prometheusRule": {"enabled": True},
            "dashboards": {"enabled": True},
        },
        "tracing": {"otlpEndpoint": "http://otel-collector.observability:4317"},
    },
    "ingress-on": {
        "gateway": {
            "ingress": {
                "enabled": True,
                "tls": [{"secretName": "chat-tls", "hosts": ["chat.example.com"]}],
            }
        }
    },
    "hpa-on": {
        "gateway": {
            "autoscaling": {"enabled": True, "targetMemoryUtilizationPercentage": 80},
            "podDisruptionBudget": {"enabled": True},
        }
    },
    "hard-anti-affinity": {"node": {"podAntiAffinityPreset": "hard"}},
    "network-policy": {
        "networkPolicy": {
            "enabled": True,
            "metricsFrom": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "monitoring"}
                    }
                }
            ],
        }
    },
    "kind": yaml.safe_load((K8S / "kind-values.yaml").read_text())
    if (K8S / "kind-values.yaml").exists()
    else {"gateway": {"service": {"type": "NodePort", "nodePort": 30080}}},
}


def need(condition: bool, reason: str) -> None:
    """Skip the test when `condition` is false, unless CI=true, where it fails."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def require(module: str, package: str) -> Any:
    """Import a tool module; skip without it (fail when CI=true)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        need(False, f"{package} is not installed (pip install -e '.[test]')")


def _render_texts(values_json: str, namespace: str, release: str) -> dict[str, str]:
    """{template: text} for the chart with these values (JSON-encoded for caching)."""
    helm = require("helm_python", "helm-python-sdk")
    with helm.Chart.load(CHART) as chart:
        return chart.render(
            values=json.loads(values_json), name=release, namespace=namespace, is_install=True
        )


@functools.lru_cache(maxsize=64)
def _render_cached(values_json: str, namespace: str, release: str) -> tuple[dict[str, str], list]:
    texts = _render_texts(values_json, namespace, release)
    objects: list[dict[str, Any]] = []
    for path in sorted(texts):
        if not path.endswith((".yaml", ".yml")):
            continue
        for doc in yaml.safe_load_all(texts[path]):
            if doc:
                doc.setdefault("metadata", {})
                objects.append(doc)
    return texts, objects


def render_texts(
    values: dict[str, Any] | None = None, namespace: str = NAMESPACE, release: str = RELEASE
) -> dict[str, str]:
    """The chart's rendered templates (including NOTES.txt) by template path."""
    texts, _ = _render_cached(json.dumps(values or {}, sort_keys=True), namespace, release)
    return dict(texts)


def render(
    values: dict[str, Any] | None = None, namespace: str = NAMESPACE, release: str = RELEASE
) -> list[dict[str, Any]]:
    """The chart's rendered objects (deep copies: tests may change them)."""
    _, objects = _render_cached(json.dumps(values or {}, sort_keys=True), namespace, release)
    return copy.deepcopy(objects)


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """Every object of one kind."""
    return [obj for obj in objects if obj.get("kind") == kind]


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    """The single object of `kind` (and `name`, when given)."""
    found = [
        obj for obj in by_kind(objects, kind) if name is None or obj["metadata"].get("name") == name
    ]
    assert len(found) == 1, f"want one {kind} {name or ''}, found {len(found)}"
    return found[0]


def pod_templates(objects: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(owner, pod template {metadata, spec}) for every workload and bare Pod."""
    for obj in objects:
        if obj.get("kind") in ("StatefulSet", "Deployment", "DaemonSet", "Job"):
            yield obj, obj["spec"]["template"]
        elif obj.get("kind") == "Pod":
            yield obj, {"metadata": obj["metadata"], "spec": obj["spec"]}


def containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Init and regular containers of a pod spec."""
    return list(pod_spec.get("initContainers") or []) + list(pod_spec.get("containers") or [])


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    """Whether a matchLabels-style selector selects these labels."""
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def is_hook(obj: dict[str, Any]) -> bool:
    """Whether the object is a Helm hook (e.g. the `helm test` pod)."""
    return "helm.sh/hook" in (obj["metadata"].get("annotations") or {})
