"""skaffold.yaml: valid v4beta14, and in step with the Dockerfiles and the chart."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml
from deploy_helpers import CHART, ROOT, SCHEMAS, need, one, render, require

SKAFFOLD = ROOT / "skaffold.yaml"


def config() -> dict[str, Any]:
    """skaffold.yaml parsed."""
    return yaml.safe_load(SKAFFOLD.read_text())


def template_key(image: str) -> str:
    """The suffix of skaffold's {{.IMAGE_REPO_x}} for artifact x (dashes become underscores)."""
    return image.replace("-", "_")


def test_matches_the_published_schema() -> None:
    """skaffold.yaml validates against the skaffold/v4beta14 JSON schema."""
    jsonschema = require("jsonschema", "jsonschema")
    path = SCHEMAS / "skaffold-v4beta14.json"
    need(path.is_file(), f"skaffold schema not found at {path}")
    data = config()
    assert data["apiVersion"] == "skaffold/v4beta14"
    jsonschema.Draft7Validator(json.loads(path.read_text())).validate(data)


def test_artifacts_build_the_chart_images_from_the_dockerfiles() -> None:
    """Artifacts parley-node/-gateway build from Dockerfile.node/.gateway: the chart's images."""
    artifacts = {a["image"]: a for a in config()["build"]["artifacts"]}
    assert set(artifacts) == {"parley-node", "parley-gateway"}
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for component in ("node", "gateway"):
        artifact = artifacts[f"parley-{component}"]
        assert artifact.get("context", ".") == "."
        dockerfile = artifact["docker"]["dockerfile"]
        assert dockerfile == f"Dockerfile.{component}" and (ROOT / dockerfile).is_file()
        assert values[component]["image"]["repository"] == artifact["image"]


def test_helm_release_substitutes_the_built_images() -> None:
    """setValueTemplates point each component's image at its artifact, and the chart uses them."""
    (release,) = config()["deploy"]["helm"]["releases"]
    assert release["chartPath"] == "charts/parley" and (ROOT / release["chartPath"]).is_dir()
    templates = release["setValueTemplates"]
    fields = re.compile(r"\{\{\.IMAGE_(REPO|TAG|DIGEST)_(\w+)\}\}")
    for component in ("node", "gateway"):
        key = template_key(f"parley-{component}")
        repo = templates[f"{component}.image.repository"]
        tag = templates[f"{component}.image.tag"]
        assert fields.findall(repo) == [("REPO", key)]
        assert fields.findall(tag) == [("TAG", key), ("DIGEST", key)]
    # what skaffold would pass, rendered: each container gets its own built image
    built = {"node": "reg.local/parley-node", "gateway": "reg.local/parley-gateway"}
    tag = "abc123@sha256:" + "f" * 64
    objects = render({c: {"image": {"repository": r, "tag": tag}} for c, r in built.items()})
    images = {
        "node": one(objects, "StatefulSet")["spec"]["template"]["spec"]["containers"][0]["image"],
        "gateway": one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"],
    }
    assert images == {c: f"{r}:{tag}" for c, r in built.items()}
    for key in release.get("setValues", {}):
        section = key.split(".")[0]
        assert section in yaml.safe_load((CHART / "values.yaml").read_text()), key


def test_port_forward_reaches_the_gateway_service() -> None:
    """portForward exposes the gateway Service's ws port 8080 on localhost:8080."""
    (forward,) = config()["portForward"]
    service = one(render(), "Service", forward["resourceName"])
    assert forward["resourceType"] == "service"
    assert forward["port"] == 8080 and forward["localPort"] == 8080
    assert {"name": "ws", "port": 8080} in [
        {"name": p["name"], "port": p["port"]} for p in service["spec"]["ports"]
    ]


def test_kind_and_minikube_profiles() -> None:
    """Profiles kind and minikube build locally without pushing; kind uses k8s/kind-values.yaml."""
    profiles = {p["name"]: p for p in config()["profiles"]}
    assert {"kind", "minikube"} <= set(profiles)
    for name in ("kind", "minikube"):
        assert profiles[name]["build"]["local"]["push"] is False
    (patch,) = profiles["kind"]["patches"]
    assert patch["path"] == "/deploy/helm/releases/0/valuesFiles"
    for values_file in patch["value"]:
        assert (ROOT / values_file).is_file()
