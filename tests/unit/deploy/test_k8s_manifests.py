"""k8s/: the plain manifests rendered from the chart, the kustomizations and the kind config."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_helpers import K8S, ROOT, one, require

SCRIPT = ROOT / "scripts" / "render_manifests.py"


def load_script() -> Any:
    """scripts/render_manifests.py as a module."""
    spec = importlib.util.spec_from_file_location("render_manifests", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def k8s_objects() -> list[dict[str, Any]]:
    """The objects in k8s/parley.yaml."""
    return [doc for doc in yaml.safe_load_all((K8S / "parley.yaml").read_text()) if doc]


def test_k8s_is_a_fresh_render_of_the_chart() -> None:
    """k8s/parley.yaml equals a fresh render of the chart's defaults (run `make manifests`)."""
    script = load_script()
    fresh = script.manifests(script.render_chart(script.PLAIN_VALUES))
    assert (K8S / "parley.yaml").read_text() == fresh, "k8s/ is stale: run `make manifests`"


def test_check_mode_reports_stale_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`render_manifests.py --check` fails on a stale file and passes once it is written."""
    script = load_script()
    monkeypatch.setattr(script, "OUTPUT", tmp_path / "k8s" / "parley.yaml")
    monkeypatch.setattr(script, "ROOT", tmp_path)
    assert script.main(["--check"]) == 1
    assert script.main([]) == 0
    assert script.main(["--check"]) == 0
    assert script.OUTPUT.read_text().startswith(script.HEADER)


def test_plain_manifests_leave_out_hooks_and_namespaces() -> None:
    """No helm test pod, no metadata.namespace: kustomize decides where things go."""
    objects = k8s_objects()
    kinds = {obj["kind"] for obj in objects}
    assert {"StatefulSet", "Deployment", "Service", "Role", "RoleBinding"} <= kinds
    assert "Pod" not in kinds
    for obj in objects:
        assert "namespace" not in obj["metadata"], obj["metadata"]["name"]
        assert "helm.sh/hook" not in (obj["metadata"].get("annotations") or {})
    # the one namespace reference, which kustomize rewrites from "default"
    binding = one(objects, "RoleBinding")
    assert [s["namespace"] for s in binding["subjects"]] == ["default"]


def test_plain_manifests_match_kubernetes_schemas() -> None:
    """Every object in k8s/parley.yaml validates strictly against Kubernetes 1.30."""
    kubernetes_validate = require("kubernetes_validate", "kubernetes-validate")
    for obj in k8s_objects():
        kubernetes_validate.validate(obj, "1.30.0", strict=True)


def test_kustomization_lists_existing_files_and_a_namespace() -> None:
    """k8s/kustomization.yaml names files that exist and the namespace it creates."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    for resource in kustomization["resources"]:
        assert (K8S / resource).is_file(), resource
    assert "parley.yaml" in kustomization["resources"]
    namespaces = [
        doc
        for resource in kustomization["resources"]
        for doc in yaml.safe_load_all((K8S / resource).read_text())
        if doc and doc["kind"] == "Namespace"
    ]
    assert [ns["metadata"]["name"] for ns in namespaces] == [kustomization["namespace"]]


def test_kind_config_maps_gateway_node_port_to_host_8080() -> None:
    """kind maps NodePort 30080 to 127.0.0.1:8080; the kind overlay and values use 30080."""
    config = yaml.safe_load((K8S / "kind-config.yaml").read_text())
    assert config["kind"] == "Cluster" and config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    mappings = [m for node in config["nodes"] for m in node.get("extraPortMappings", [])]
    assert {"containerPort": 30080, "hostPort": 8080} in [
        {k: m[k] for k in ("containerPort", "hostPort")} for m in mappings
    ]
    assert sum(node["role"] == "worker" for node in config["nodes"]) >= 3

    overlay = yaml.safe_load((K8S / "kind" / "kustomization.yaml").read_text())
    assert overlay["resources"] == [".."]
    (patch,) = overlay["patches"]
    gateway = one(k8s_objects(), "Service", patch["target"]["name"])
    ops = {op["path"]: op["value"] for op in yaml.safe_load(patch["patch"])}
    assert ops["/spec/type"] == "NodePort"
    assert gateway["spec"]["ports"][0]["name"] == "ws"  # /spec/ports/0 is the WebSocket port
    assert ops["/spec/ports/0/nodePort"] == 30080

    values = yaml.safe_load((K8S / "kind-values.yaml").read_text())
    assert values["gateway"]["service"] == {"type": "NodePort", "nodePort": 30080}
