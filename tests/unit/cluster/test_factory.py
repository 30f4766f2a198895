"""make_discovery: the --discovery setting picks the implementation."""

from __future__ import annotations

from pathlib import Path

import pytest
from parley.cluster.factory import make_discovery
from parley.cluster.kubernetes import KubernetesDiscovery
from parley.cluster.static import StaticDiscovery

NODES = {"node-0": "127.0.0.1:7001"}
COMMON = {"namespace": "", "service": "parley-node", "port": 7000, "grace_seconds": 1.0}


def test_static() -> None:
    """ "static" gives a StaticDiscovery over the nodes."""
    discovery = make_discovery("static", nodes=NODES, **COMMON)
    assert isinstance(discovery, StaticDiscovery)
    assert discovery.members() == NODES


def test_static_without_nodes_is_an_error() -> None:
    """Static discovery with no nodes is a configuration error, not an empty cluster."""
    with pytest.raises(ValueError, match="--nodes"):
        make_discovery("static", nodes={}, **COMMON)


def test_unknown_kind() -> None:
    """Anything else is rejected with the accepted values."""
    with pytest.raises(ValueError, match="static, kubernetes"):
        make_discovery("consul", nodes=NODES, **COMMON)


def test_kubernetes_from_kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ "kubernetes" outside a pod loads the kubeconfig and defaults the namespace."""
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: test\n"
        "clusters: [{name: test, cluster: {server: 'http://127.0.0.1:1'}}]\n"
        "contexts: [{name: test, context: {cluster: test, user: test}}]\n"
        "users: [{name: test, user: {}}]\n"
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    discovery = make_discovery("kubernetes", nodes={}, **COMMON)
    assert isinstance(discovery, KubernetesDiscovery)
    if not Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace").exists():
        assert discovery.namespace == "default"
    assert discovery.members() == {}
