"""The Helm chart charts/parley: lint, Kubernetes schemas, and what schemas cannot check."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_helpers import (
    CHART,
    KUBE_VERSIONS,
    NAMESPACE,
    RELEASE,
    SCHEMAS,
    VALUE_SETS,
    by_kind,
    containers,
    is_hook,
    matches,
    need,
    one,
    pod_templates,
    render,
    render_texts,
    require,
)
from parley.cli import parse_gateway_config, parse_node_config
from parley.config import GatewayConfig, NodeConfig

ALL_SETS = pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())

CRD_SCHEMAS = {
    "ServiceMonitor": "servicemonitor-monitoring.coreos.com-v1.json",
    "PodMonitor": "podmonitor-monitoring.coreos.com-v1.json",
    "PrometheusRule": "prometheusrule-monitoring.coreos.com-v1.json",
}

NODE = f"{RELEASE}-node"
GATEWAY = f"{RELEASE}-gateway"


def secrets_of(objects: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """The rendered Secrets' data, and the existing one the value sets name."""
    secrets = {
        obj["metadata"]["name"]: {
            key: base64.b64decode(value).decode() for key, value in obj.get("data", {}).items()
        }
        for obj in by_kind(objects, "Secret")
    }
    secrets.setdefault("my-jwt", {"jwt-secret": "from-an-existing-secret"})
    secrets.setdefault("parley-mtls", {"tls.crt": "C", "tls.key": "K", "ca.crt": "A"})
    secrets.setdefault("chat-archive", {"dsn": "postgresql://parley@db:5432/chat"})
    return secrets


def mounted_files(
    pod_spec: dict[str, Any], container: dict[str, Any], objects: list[dict[str, Any]]
) -> dict[str, str]:
    """{path: contents} of the Secret files mounted into a container, as the kubelet writes them."""
    secrets = secrets_of(objects)
    volumes = {v["name"]: v for v in pod_spec.get("volumes") or []}
    files: dict[str, str] = {}
    for mount in container.get("volumeMounts") or []:
        source = volumes.get(mount["name"], {}).get("secret")  # (a claim: not here)
        if source is None:
            continue
        data = secrets[source["secretName"]]
        items = source.get("items") or [{"key": k, "path": k} for k in data]
        for item in items:
            files[f"{mount['mountPath']}/{item['path']}"] = data[item["key"]]
    return files


def gateway_secret(objects: list[dict[str, Any]]) -> str:
    """The HS256 key the gateway reads: from its secret file (or env)."""
    template = one(objects, "Deployment")["spec"]["template"]
    container = template["spec"]["containers"][0]
    env = env_of(container, objects)
    if "PARLEY_JWT_SECRET_FILE" not in env:
        return env.get("PARLEY_JWT_SECRET", "")
    return mounted_files(template["spec"], container, objects)[env["PARLEY_JWT_SECRET_FILE"]]


def env_of(
    container: dict[str, Any], objects: list[dict[str, Any]], pod: str = "pod-0"
) -> dict[str, str]:
    """The container's environment as the kubelet would set it (downward API, Secrets)."""
    secrets = secrets_of(objects)
    fields = {"metadata.name": pod, "metadata.namespace": NAMESPACE}
    env: dict[str, str] = {}
    for item in container.get("env") or []:
        if "value" in item:
            env[item["name"]] = str(item["value"])
        elif "fieldRef" in item.get("valueFrom", {}):
            env[item["name"]] = fields[item["valueFrom"]["fieldRef"]["fieldPath"]]
        elif "secretKeyRef" in item.get("valueFrom", {}):
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = secrets[ref["name"]][ref["key"]]
        else:
            raise AssertionError(f"unexpected env source {item}")
    return env


def node_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The node container of the StatefulSet."""
    return one(objects, "StatefulSet")["spec"]["template"]["spec"]["containers"][0]


def gateway_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The gateway container of the Deployment."""
    return one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]


# --- lint and schemas -------------------------------------------------------------------


@ALL_SETS
def test_lint_is_clean(values: dict[str, Any]) -> None:
    """`helm lint --strict` reports no error and no warning for every supported Kubernetes."""
    helm = require("helm_python", "helm-python-sdk")
    for kube_version in KUBE_VERSIONS:
        report = helm.lint(
            CHART, values, strict=True, namespace=NAMESPACE, kube_version=f"v{kube_version}"
        )
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert not report["errors"] and not problems, (kube_version, report)


@ALL_SETS
@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_objects_match_kubernetes_schemas(values: dict[str, Any], kube_version: str) -> None:
    """Every built-in object validates (strictly: no unknown fields) against Kubernetes' schemas."""
    kubernetes_validate = require("kubernetes_validate", "kubernetes-validate")
    for obj in render(values):
        if obj["kind"] in CRD_SCHEMAS:
            continue
        try:
            kubernetes_validate.validate(obj, kube_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {path}: {exc.message}")


def test_monitoring_objects_match_operator_schemas() -> None:
    """ServiceMonitor, PodMonitor and PrometheusRule validate against prometheus-operator's CRDs."""
    jsonschema = require("jsonschema", "jsonschema")
    need(SCHEMAS.is_dir(), f"shared CRD schemas not found at {SCHEMAS}")
    objects = render(VALUE_SETS["monitoring-on"])
    checked = set()
    for obj in objects:
        if obj["kind"] in CRD_SCHEMAS:
            schema = json.loads((SCHEMAS / CRD_SCHEMAS[obj["kind"]]).read_text())
            jsonschema.Draft7Validator(schema).validate(obj)
            checked.add(obj["kind"])
    expected = {"ServiceMonitor", "PodMonitor"}
    if rule_files():
        expected.add("PrometheusRule")
    assert checked == expected


def test_operator_schemas_catch_mistakes() -> None:
    """The CRD schema check is not vacuous: a malformed interval is rejected."""
    jsonschema = require("jsonschema", "jsonschema")
    need(SCHEMAS.is_dir(), f"shared CRD schemas not found at {SCHEMAS}")
    monitor = one(render(VALUE_SETS["monitoring-on"]), "ServiceMonitor")
    monitor["spec"]["endpoints"][0]["interval"] = "every thirty seconds"
    schema = json.loads((SCHEMAS / CRD_SCHEMAS["ServiceMonitor"]).read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate(monitor)


@pytest.mark.parametrize(
    "values",
    [
        {"node": {"store": "postgres"}},
        {"node": {"replicaCount": 0}},
        {"nodes": {"replicaCount": 3}},
        {"gateway": {"service": {"type": "ExternalName"}}},
        {"logging": {"format": "xml"}},
    ],
    ids=["bad-store", "no-nodes", "misspelt-key", "bad-service-type", "bad-log-format"],
)
def test_values_schema_rejects(values: dict[str, Any]) -> None:
    """values.schema.json turns away values the chart cannot honour."""
    helm = require("helm_python", "helm-python-sdk")
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmValuesError):
        chart.validate_schema(values)


def test_values_yaml_documents_every_key() -> None:
    """values.yaml has the schema modeline, and every setting a comment (its own or a parent's)."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    assert lines[0] == "# yaml-language-server: $schema=values.schema.json"
    key_line = re.compile(r"^(\s*)([A-Za-z_][\w./-]*):")
    keys = []  # (line number, indent, commented)
    for number, line in enumerate(lines):
        match = key_line.match(line)
        if match:
            above = lines[number - 1].strip() if number else ""
            keys.append((number, len(match.group(1)), above.startswith("#")))
    stack: list[tuple[int, bool]] = []  # (indent, commented) of the open ancestors
    for index, (number, indent, commented) in enumerate(keys):
        while stack and stack[-1][0] >= indent:
            stack.pop()
        has_children = index + 1 < len(keys) and keys[index + 1][1] > indent
        if not has_children:
            documented = commented or any(c for _i, c in stack)
            assert documented, f"values.yaml:{number + 1}: {lines[number].strip()} has no comment"
        stack.append((indent, commented))


def test_schema_knows_every_default() -> None:
    """The chart's own defaults pass its schema (and so do the documented examples)."""
    helm = require("helm_python", "helm-python-sdk")
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema({})
        for values in VALUE_SETS.values():
            chart.validate_schema(values)


# --- workloads ---------------------------------------------------------------------------


@ALL_SETS
def test_ports_named_by_probes_and_services_exist(values: dict[str, Any]) -> None:
    """Probe ports and Service targetPorts name container ports that exist."""
    objects = render(values)
    for _owner, template in pod_templates(objects):
        for container in containers(template["spec"]):
            names = {p["name"] for p in container.get("ports", [])}
            numbers = {p["containerPort"] for p in container.get("ports", [])}
            for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
                probe = container.get(kind)
                if not probe:
                    continue
                action = probe.get("grpc") or probe.get("httpGet") or probe.get("tcpSocket")
                assert action, f"{container['name']} {kind} has no grpc/httpGet/tcpSocket"
                port = action["port"]
                assert port in (numbers if isinstance(port, int) else names), (container, kind)
    pods = [t for _o, t in pod_templates(objects)]
    for service in by_kind(objects, "Service"):
        selected = [
            t for t in pods if matches(service["spec"]["selector"], t["metadata"]["labels"])
        ]
        assert selected, f"Service {service['metadata']['name']} selects no pod"
        for port in service["spec"]["ports"]:
            for template in selected:
                names = {
                    p["name"] for c in containers(template["spec"]) for p in c.get("ports", [])
                }
                assert port["targetPort"] in names, (service["metadata"]["name"], port)


@ALL_SETS
def test_selectors_match_pod_labels(values: dict[str, Any]) -> None:
    """Workload, PDB, Service and monitor selectors select the pods they are meant for."""
    objects = render(values)
    for workload in by_kind(objects, "StatefulSet") + by_kind(objects, "Deployment"):
        selector = workload["spec"]["selector"]["matchLabels"]
        assert matches(selector, workload["spec"]["template"]["metadata"]["labels"])
    templates = {
        owner["metadata"]["name"]: t for owner, t in pod_templates(objects) if not is_hook(owner)
    }
    node_labels = templates[NODE]["metadata"]["labels"]
    gateway_labels = templates[GATEWAY]["metadata"]["labels"]
    assert matches(one(objects, "Service", NODE)["spec"]["selector"], node_labels)
    assert not matches(one(objects, "Service", NODE)["spec"]["selector"], gateway_labels)
    assert matches(one(objects, "Service", GATEWAY)["spec"]["selector"], gateway_labels)
    assert not matches(one(objects, "Service", GATEWAY)["spec"]["selector"], node_labels)
    for pdb in by_kind(objects, "PodDisruptionBudget"):
        selected = [
            name
            for name, t in templates.items()
            if matches(pdb["spec"]["selector"]["matchLabels"], t["metadata"]["labels"])
        ]
        assert selected == [pdb["metadata"]["name"]], pdb
    for monitor in by_kind(objects, "PodMonitor"):
        for labels in (node_labels, gateway_labels):
            assert matches(monitor["spec"]["selector"]["matchLabels"], labels)
    for monitor in by_kind(objects, "ServiceMonitor"):
        for name in (NODE, GATEWAY):
            labels = one(objects, "Service", name)["metadata"]["labels"]
            assert matches(monitor["spec"]["selector"]["matchLabels"], labels)
    for hpa in by_kind(objects, "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        one(objects, target["kind"], target["name"])


def test_node_statefulset_defaults() -> None:
    """3 nodes, Parallel, headless serviceName, /data on a claim, native gRPC probes."""
    objects = render()
    sts = one(objects, "StatefulSet", NODE)
    spec = sts["spec"]
    assert spec["replicas"] == 3
    assert spec["podManagementPolicy"] == "Parallel"
    assert spec["serviceName"] == NODE
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    container = node_container(objects)
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts["/data"] == "data" and "/tmp" in mounts
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["grpc"]["port"] == 7000, probe
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "grpc": 7000,
        "metrics": 9100,
    }
    volumes = {v["name"] for v in spec["template"]["spec"]["volumes"]}
    assert "data" not in volumes


def test_five_nodes() -> None:
    """node.replicaCount scales the StatefulSet; the PDB still lets one go at a time."""
    objects = render(VALUE_SETS["five-nodes"])
    assert one(objects, "StatefulSet", NODE)["spec"]["replicas"] == 5
    assert one(objects, "PodDisruptionBudget", NODE)["spec"]["maxUnavailable"] == 1


def test_persistence_off_uses_empty_dir() -> None:
    """persistence.enabled=false: no claim template, /data is an emptyDir."""
    objects = render(VALUE_SETS["persistence-off"])
    spec = one(objects, "StatefulSet", NODE)["spec"]
    assert "volumeClaimTemplates" not in spec
    assert "persistentVolumeClaimRetentionPolicy" not in spec
    volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
    assert volumes["data"] == {"name": "data", "emptyDir": {}}
    assert env_of(node_container(objects), objects)["PARLEY_STORE"] == "memory"


def test_headless_node_service() -> None:
    """The node Service is headless, publishes not-ready pods, and names its port grpc."""
    service = one(render(), "Service", NODE)
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
    assert ports["grpc"] == 7000


def test_nodes_spread_over_hosts() -> None:
    """Node pods prefer different hosts by default, and must with the hard preset."""
    soft = one(render(), "StatefulSet", NODE)["spec"]["template"]["spec"]
    preferred = soft["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    assert preferred[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    (spread,) = soft["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert spread["whenUnsatisfiable"] == "ScheduleAnyway"
    hard = one(render(VALUE_SETS["hard-anti-affinity"]), "StatefulSet", NODE)["spec"]["template"]
    required = hard["spec"]["affinity"]["podAntiAffinity"]
    assert "requiredDuringSchedulingIgnoredDuringExecution" in required


@ALL_SETS
def test_grace_period_outlasts_drain(values: dict[str, Any]) -> None:
    """terminationGracePeriodSeconds is longer than PARLEY_DRAIN_SECONDS for every server."""
    objects = render(values)
    for owner, template in pod_templates(objects):
        if is_hook(owner):
            continue
        grace = template["spec"]["terminationGracePeriodSeconds"]
        drain = float(env_of(template["spec"]["containers"][0], objects)["PARLEY_DRAIN_SECONDS"])
        assert grace > drain, owner["metadata"]["name"]


def test_grace_not_longer_than_drain_fails() -> None:
    """A grace period that would cut the drain short is refused at render time."""
    helm = require("helm_python", "helm-python-sdk")
    with pytest.raises(helm.HelmError, match=r"longer than node\.drainSeconds"):
        render({"node": {"drainSeconds": 40, "terminationGracePeriodSeconds": 30}})


def test_gateway_defaults() -> None:
    """One gateway, HTTP probes on /readyz and /healthz, Service on ws 8080 and metrics."""
    objects = render()
    deployment = one(objects, "Deployment", GATEWAY)
    assert deployment["spec"]["replicas"] == 1
    container = gateway_container(objects)
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    service = one(objects, "Service", GATEWAY)
    assert service["spec"]["type"] == "ClusterIP"
    ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
    assert ports == {"ws": 8080, "metrics": 9100}
    assert not by_kind(objects, "Ingress") and not by_kind(objects, "HorizontalPodAutoscaler")


def test_kind_values_expose_node_port_30080() -> None:
    """The kind values make the gateway Service a NodePort on 30080."""
    service = one(render(VALUE_SETS["kind"]), "Service", GATEWAY)
    assert service["spec"]["type"] == "NodePort"
    ws = next(p for p in service["spec"]["ports"] if p["name"] == "ws")
    assert ws["nodePort"] == 30080


def test_ingress_is_websocket_friendly() -> None:
    """The Ingress routes /ws to the gateway's ws port with hour-long nginx timeouts."""
    objects = render(VALUE_SETS["ingress-on"])
    ingress = one(objects, "Ingress", GATEWAY)
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "3600"
    assert annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"] == "3600"
    (rule,) = ingress["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    assert path["path"] == "/ws"
    assert path["backend"]["service"] == {"name": GATEWAY, "port": {"name": "ws"}}
    assert ingress["spec"]["tls"][0]["secretName"] == "chat-tls"


def test_hpa_owns_gateway_replicas() -> None:
    """With autoscaling on, the HPA (autoscaling/v2) scales gateways; the Deployment sets none."""
    objects = render(VALUE_SETS["hpa-on"])
    assert "replicas" not in one(objects, "Deployment", GATEWAY)["spec"]
    hpa = one(objects, "HorizontalPodAutoscaler", GATEWAY)
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert {m["resource"]["name"] for m in hpa["spec"]["metrics"]} == {"cpu", "memory"}


# --- identity, RBAC, security ----------------------------------------------------------


def test_network_policy_keeps_node_grpc_inside_the_release() -> None:
    """Node gRPC admits only this release's pods; WebSocket is open; metrics as configured."""
    objects = render(VALUE_SETS["network-policy"])
    templates = {o["metadata"]["name"]: t for o, t in pod_templates(objects) if not is_hook(o)}
    policies = {p["metadata"]["name"]: p["spec"] for p in by_kind(objects, "NetworkPolicy")}
    assert set(policies) == {NODE, GATEWAY}
    for name, spec in policies.items():
        assert matches(spec["podSelector"]["matchLabels"], templates[name]["metadata"]["labels"])
        for rule in spec["ingress"]:
            for port in rule["ports"]:
                ports = {p["name"] for p in templates[name]["spec"]["containers"][0]["ports"]}
                assert port["port"] in ports, (name, port)
    grpc_rule, metrics_rule = policies[NODE]["ingress"]
    assert [p["port"] for p in grpc_rule["ports"]] == ["grpc"]
    (peer,) = grpc_rule["from"]
    allowed = [
        n
        for n, t in templates.items()
        if matches(peer["podSelector"]["matchLabels"], t["metadata"]["labels"])
    ]
    assert sorted(allowed) == sorted([NODE, GATEWAY])
    other_release = {**templates[GATEWAY]["metadata"]["labels"], "app.kubernetes.io/instance": "x"}
    assert not matches(peer["podSelector"]["matchLabels"], other_release)
    assert metrics_rule["from"] == VALUE_SETS["network-policy"]["networkPolicy"]["metricsFrom"]
    ws_rule, _ = policies[GATEWAY]["ingress"]
    assert "from" not in ws_rule and [p["port"] for p in ws_rule["ports"]] == ["ws"]
    # on by default, metrics only for Prometheus pods; off on request
    default = {p["metadata"]["name"]: p["spec"] for p in by_kind(render(), "NetworkPolicy")}
    _, default_metrics = default[NODE]["ingress"]
    (prometheus,) = default_metrics["from"]
    assert prometheus["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}
    assert not by_kind(render({"networkPolicy": {"enabled": False}}), "NetworkPolicy")
    closed = render({"networkPolicy": {"metricsFrom": []}})
    for policy in by_kind(closed, "NetworkPolicy"):
        assert len(policy["spec"]["ingress"]) == 1  # no metrics rule: nobody from outside


@ALL_SETS
def test_role_allows_only_reading_endpointslices(values: dict[str, Any]) -> None:
    """The one Role grants exactly get/list/watch on discovery.k8s.io endpointslices."""
    objects = render(values)
    (role,) = by_kind(objects, "Role")
    assert not by_kind(objects, "ClusterRole") and not by_kind(objects, "ClusterRoleBinding")
    assert role["rules"] == [
        {
            "apiGroups": ["discovery.k8s.io"],
            "resources": ["endpointslices"],
            "verbs": ["get", "list", "watch"],
        }
    ]


def test_both_components_run_as_the_bound_service_account() -> None:
    """Nodes and gateways use the ServiceAccount the RoleBinding binds, in the release namespace."""
    objects = render()
    account = one(objects, "ServiceAccount")["metadata"]["name"]
    binding = one(objects, "RoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": one(objects, "Role")["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}
    ]
    for owner, template in pod_templates(objects):
        if not is_hook(owner):
            assert template["spec"]["serviceAccountName"] == account
            assert template["spec"]["automountServiceAccountToken"] is True


@ALL_SETS
def test_every_container_is_locked_down(values: dict[str, Any]) -> None:
    """Non-root 10001, read-only root with /tmp mounted, no escalation, no capabilities, seccomp."""
    for owner, template in pod_templates(render(values)):
        pod = template["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in containers(pod):
            where = f"{owner['metadata']['name']}/{container['name']}"
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True, where
            assert context["runAsUser"] == 10001, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}, where
            assert "/tmp" in {m["mountPath"] for m in container["volumeMounts"]}, where
            resources = container["resources"]
            assert resources["requests"] and resources["limits"], where
            assert {"cpu", "memory"} <= set(resources["limits"]), where


def test_images_default_to_app_version() -> None:
    """Image tags default to the chart's appVersion; a digest replaces the tag."""
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    objects = render()
    assert node_container(objects)["image"] == f"parley-node:{app_version}"
    assert gateway_container(objects)["image"] == f"parley-gateway:{app_version}"
    digest = "sha256:" + "a" * 64
    pinned = render(
        {"node": {"image": {"repository": "reg.example/parley-node", "digest": digest}}}
    )
    assert node_container(pinned)["image"] == f"reg.example/parley-node@{digest}"


def test_pod_placement_and_extras_come_from_values() -> None:
    """Placement, pull secrets, pod labels/annotations and extraEnv come from values."""
    extras = {
        "nodeSelector": {"disk": "ssd"},
        "tolerations": [{"key": "chat", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
        "podAnnotations": {"example.com/team": "chat"},
        "podLabels": {"team": "chat"},
        "extraEnv": [{"name": "PARLEY_LOG_LEVEL", "value": "debug"}],
    }
    objects = render({"node": extras, "gateway": extras, "imagePullSecrets": [{"name": "regcred"}]})
    for owner, template in pod_templates(objects):
        if is_hook(owner):
            continue
        spec = template["spec"]
        assert spec["nodeSelector"] == extras["nodeSelector"]
        assert spec["tolerations"] == extras["tolerations"]
        assert spec["affinity"] == extras["affinity"]
        assert spec["imagePullSecrets"] == [{"name": "regcred"}]
        assert template["metadata"]["labels"]["team"] == "chat"
        assert template["metadata"]["annotations"]["example.com/team"] == "chat"
        assert spec["containers"][0]["env"][-1] == extras["extraEnv"][0]


# --- the command line contract ------------------------------------------------------------


@ALL_SETS
def test_env_vars_are_config_fields(values: dict[str, Any]) -> None:
    """Every env var is PARLEY_<field of NodeConfig/GatewayConfig> or OTEL_*."""
    fields = {
        "node": {f.name for f in dataclasses.fields(NodeConfig)},
        "gateway": {f.name for f in dataclasses.fields(GatewayConfig)},
        "chat": {f.name for f in dataclasses.fields(GatewayConfig)},  # the helm test pod
    }
    for owner, template in pod_templates(render(values)):
        for container in containers(template["spec"]):
            for item in container.get("env") or []:
                name = item["name"]
                if name.startswith("OTEL_"):
                    continue
                assert name.startswith("PARLEY_"), f"{owner['metadata']['name']}: {name}"
                field = name.removeprefix("PARLEY_").lower()
                assert field in fields[container["name"]], f"{container['name']}: {name}"


@ALL_SETS
def test_node_env_parses_as_the_intended_config(values: dict[str, Any]) -> None:
    """`parley node` with the pod's env discovers nodes through the headless Service."""
    objects = render(values)
    config = parse_node_config([], env_of(node_container(objects), objects, pod=f"{NODE}-1"))
    assert config.id == f"{NODE}-1"
    assert config.discovery == "kubernetes"
    assert config.k8s_namespace == NAMESPACE
    assert config.k8s_service == NODE
    assert config.k8s_port == 7000
    assert config.grpc == "0.0.0.0:7000"
    assert config.http == "0.0.0.0:9100"
    assert config.data_dir == "/data"
    assert config.store == ("memory" if values is VALUE_SETS["persistence-off"] else "sqlite")
    assert config.replicas == 3
    assert config.log_format == "json"
    assert config.nodes == {}


@ALL_SETS
def test_gateway_env_parses_as_the_intended_config(values: dict[str, Any]) -> None:
    """`parley gateway` with the pod's env listens on 8080/9100 and finds nodes alike."""
    objects = render(values)
    config = parse_gateway_config([], env_of(gateway_container(objects), objects, pod="gw-abc"))
    assert config.ws == "0.0.0.0:8080"
    assert config.http == "0.0.0.0:9100"
    assert config.discovery == "kubernetes"
    assert (config.k8s_namespace, config.k8s_service, config.k8s_port) == (NAMESPACE, NODE, 7000)
    assert config.id == "gw-abc"
    auth = values.get("auth", {})
    assert config.jwt_secret == ""  # never in the environment
    if auth.get("enabled") is False:
        assert config.auth == "off"
        assert config.jwt_secret_file == ""
    elif auth.get("jwks"):
        assert config.auth == "jwt" and config.jwt_jwks and not config.jwt_secret_file
    else:
        assert config.auth == "jwt"
        assert config.jwt_secret_file == "/etc/parley/auth/jwt-secret"
        secret = gateway_secret(objects)
        if auth.get("existingSecret"):
            assert secret == "from-an-existing-secret"
        elif auth.get("jwtSecret"):
            assert secret == auth["jwtSecret"]
        else:
            assert len(secret) == 48


def test_auth_is_on_by_default_with_a_generated_key_as_a_file() -> None:
    """The defaults: a random 48-character key in a chart-owned Secret,
    mounted into the gateway as a file (not an environment variable)."""
    objects = render()
    secret = one(objects, "Secret")
    key = base64.b64decode(secret["data"]["jwt-secret"]).decode()
    assert len(key) == 48
    assert gateway_secret(objects) == key
    for _owner, template in pod_templates(objects):
        for container in containers(template["spec"]):
            names = {e["name"] for e in container.get("env") or []}
            assert "PARLEY_JWT_SECRET" not in names and "PARLEY_AUTH" not in names


def test_auth_existing_secret_is_referenced_not_created() -> None:
    """auth.existingSecret: no Secret rendered, the gateway reads the named one."""
    objects = render(VALUE_SETS["auth-existing-secret"])
    assert not by_kind(objects, "Secret")
    volumes = one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]
    (auth,) = [v for v in volumes if v["name"] == "auth"]
    assert auth["secret"]["secretName"] == "my-jwt"


def test_auth_off_is_explicit_and_sets_no_secret() -> None:
    """auth.enabled false: PARLEY_AUTH=off, no Secret, no key anywhere."""
    objects = render(VALUE_SETS["auth-off"])
    assert not by_kind(objects, "Secret")
    assert env_of(gateway_container(objects), objects)["PARLEY_AUTH"] == "off"
    for _owner, template in pod_templates(objects):
        for container in containers(template["spec"]):
            names = {e["name"] for e in container.get("env") or []}
            assert not {"PARLEY_JWT_SECRET", "PARLEY_JWT_SECRET_FILE"} & names


def test_jwks_from_a_configmap_and_claims() -> None:
    """auth.jwks.configMap: the JWKS mounted as a directory (updates reach the
    gateway), issuer/audience/leeway passed on, and no HS256 key is made."""
    objects = render(VALUE_SETS["auth-jwks"])
    assert not by_kind(objects, "Secret")
    template = one(objects, "Deployment")["spec"]["template"]
    container = template["spec"]["containers"][0]
    config = parse_gateway_config([], env_of(container, objects))
    assert config.jwt_jwks == "/etc/parley/jwks/keys.json"
    assert (config.jwt_issuer, config.jwt_audience, config.jwt_leeway) == (
        "https://id.example.com", "parley", 10.0
    )  # fmt: skip
    assert config.jwt_secret_file == ""
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "jwks"]
    assert mount["mountPath"] == "/etc/parley/jwks" and "subPath" not in mount
    (volume,) = [v for v in template["spec"]["volumes"] if v["name"] == "jwks"]
    assert volume["configMap"]["name"] == "idp-keys"
    # helm test has no key to sign with here
    assert not [o for o in objects if is_hook(o)]


def test_the_archive_dsn_comes_from_a_secret_as_a_file() -> None:
    objects = render(VALUE_SETS["archive"])
    template = one(objects, "StatefulSet")["spec"]["template"]
    container = template["spec"]["containers"][0]
    config = parse_node_config([], env_of(container, objects, pod=f"{NODE}-0"))
    assert (config.archive_dsn, config.archive_dsn_file) == ("", "/etc/parley/archive/dsn")
    files = mounted_files(template["spec"], container, objects)
    assert files["/etc/parley/archive/dsn"] == "postgresql://parley@db:5432/chat"
    plain = parse_node_config([], env_of(node_container(render()), render(), pod=f"{NODE}-0"))
    assert (plain.archive_dsn, plain.archive_dsn_file) == ("", "")


def test_tls_mounts_the_secret_and_moves_probes_to_http() -> None:
    objects = render(VALUE_SETS["tls"])
    node = parse_node_config([], env_of(node_container(objects), objects, pod=f"{NODE}-0"))
    gateway = parse_gateway_config([], env_of(gateway_container(objects), objects))
    for config in (node, gateway):
        assert (config.tls_cert, config.tls_key, config.tls_ca) == (
            "/etc/parley/tls/tls.crt", "/etc/parley/tls/tls.key", "/etc/parley/tls/ca.crt"
        )  # fmt: skip
        assert config.tls_server_name == NODE
    for _owner, template in pod_templates(objects):
        spec = template["spec"]
        tls = [v for v in spec.get("volumes") or [] if v["name"] == "tls"]
        if spec["containers"][0]["name"] in ("node", "gateway"):
            assert tls[0]["secret"]["secretName"] == "parley-mtls"
    probes = {k: v for k, v in node_container(objects).items() if k.endswith("Probe")}
    assert probes and all("grpc" not in p for p in probes.values())
    assert probes["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert probes["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}


# --- monitoring --------------------------------------------------------------------------


def dashboard_files() -> list[Path]:
    """The dashboards the chart ships."""
    return sorted((CHART / "dashboards").glob("*.json"))


def rule_files() -> list[Path]:
    """The alert rule files the chart ships."""
    return sorted((CHART / "rules").glob("*.yaml"))


def test_pods_carry_prometheus_scrape_annotations() -> None:
    """Node and gateway pods say where their metrics are."""
    for owner, template in pod_templates(render()):
        if is_hook(owner):
            continue
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == "9100"
        assert annotations["prometheus.io/path"] == "/metrics"


def test_monitors_scrape_the_metrics_port() -> None:
    """ServiceMonitor and PodMonitor scrape /metrics on the port named metrics."""
    objects = render(VALUE_SETS["monitoring-on"])
    service_monitor = one(objects, "ServiceMonitor")
    assert service_monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert [e["port"] for e in service_monitor["spec"]["endpoints"]] == ["metrics"]
    pod_monitor = one(objects, "PodMonitor")
    assert [e["port"] for e in pod_monitor["spec"]["podMetricsEndpoints"]] == ["metrics"]
    assert not by_kind(render(), "ServiceMonitor") and not by_kind(render(), "PodMonitor")


def test_dashboards_configmap_holds_every_dashboard() -> None:
    """The ConfigMap labelled grafana_dashboard=1 has one valid JSON key per dashboards/*.json."""
    files = dashboard_files()
    maps = [
        obj
        for obj in by_kind(render(VALUE_SETS["monitoring-on"]), "ConfigMap")
        if (obj["metadata"].get("labels") or {}).get("grafana_dashboard") == "1"
    ]
    if not files:
        assert maps == []
        return
    (configmap,) = maps
    assert sorted(configmap["data"]) == [f.name for f in files]
    for path in files:
        assert json.loads(configmap["data"][path.name]) == json.loads(path.read_text())
    assert not by_kind(render({"monitoring": {"dashboards": {"enabled": False}}}), "ConfigMap")


def test_prometheus_rule_carries_every_rule_group() -> None:
    """The PrometheusRule has every group of every rules/*.yaml, in file order."""
    files = rule_files()
    rules = by_kind(render(VALUE_SETS["monitoring-on"]), "PrometheusRule")
    if not files:
        assert rules == []
        return
    expected = []
    for path in files:
        doc = yaml.safe_load(path.read_text())
        expected += doc.get("groups") or doc.get("spec", {}).get("groups") or []
    (rule,) = rules
    assert rule["spec"]["groups"] == expected
    assert not by_kind(render(), "PrometheusRule")


def test_tracing_endpoint_reaches_both_components() -> None:
    """tracing.otlpEndpoint sets OTEL_EXPORTER_OTLP_ENDPOINT and a service name per component."""
    objects = render(VALUE_SETS["monitoring-on"])
    for container, service in (
        (node_container(objects), "parley-node"),
        (gateway_container(objects), "parley-gateway"),
    ):
        env = env_of(container, objects)
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.observability:4317"
        assert env["OTEL_SERVICE_NAME"] == service


# --- names, notes, helm test ------------------------------------------------------------


def test_names_fit_in_63_characters() -> None:
    """A long release name still gives valid object names, Service names within 63 characters."""
    release = "a-very-long-release-name-for-parley-chat-deployments"
    objects = render(release=release)
    assert len(release) <= 53
    for obj in objects:
        assert len(obj["metadata"]["name"]) <= 63, obj["metadata"]["name"]
    long = render({"fullnameOverride": "x" * 53})
    for obj in long:
        assert len(obj["metadata"]["name"]) <= 63, obj["metadata"]["name"]


def test_release_named_parley_gives_short_names() -> None:
    """Release "parley" names the StatefulSet parley-node, so pods are parley-node-0, -1, -2."""
    objects = render()
    assert {o["metadata"]["name"] for o in by_kind(objects, "StatefulSet")} == {"parley-node"}
    other = render(release="chat")
    assert {o["metadata"]["name"] for o in by_kind(other, "StatefulSet")} == {"chat-parley-node"}
    env = env_of(node_container(other), other)
    assert env["PARLEY_K8S_SERVICE"] == "chat-parley-node"


def test_notes_give_ready_to_paste_commands() -> None:
    """NOTES.txt has a kubectl port-forward line and a wscat line for ?user=alice."""
    notes = render_texts(VALUE_SETS["auth-off"])["parley/templates/NOTES.txt"]
    assert f"kubectl --namespace {NAMESPACE} port-forward svc/{GATEWAY} 8080:8080" in notes
    assert "wscat -c 'ws://127.0.0.1:8080/ws?user=alice'" in notes
    assert "open http://127.0.0.1:8080/" in notes  # the web client
    with_auth = render_texts(VALUE_SETS["auth-on"])["parley/templates/NOTES.txt"]
    assert "?token=" in with_auth and "get secret parley-auth" in with_auth
    assert "?token=" in render_texts()["parley/templates/NOTES.txt"]  # on by default


def test_helm_test_pod_chats_through_the_gateway_service() -> None:
    """The helm test hook runs the chart's chat script with python against the gateway Service."""
    objects = render()
    pod = one(objects, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    (container,) = pod["spec"]["containers"]
    assert container["image"] == gateway_container(objects)["image"]
    python, flag, script, url, timeout = container["command"]
    assert (python, flag) == ("python", "-c")
    assert script.strip() == (CHART / "files" / "helm-test-chat.py").read_text().strip()
    assert url == f"ws://{GATEWAY}:8080/ws"
    assert float(timeout) > 0
    compile(script, "helm-test-chat.py", "exec")
    authed = one(render(VALUE_SETS["auth-on"]), "Pod")["spec"]["containers"][0]
    assert [e["name"] for e in authed["env"]] == ["PARLEY_JWT_SECRET_FILE"]
    assert not by_kind(render({"tests": {"enabled": False}}), "Pod")
