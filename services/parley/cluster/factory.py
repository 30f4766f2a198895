"""Build the configured Discovery from the `--discovery` setting."""

from __future__ import annotations

from parley.cluster.discovery import Discovery
from parley.cluster.static import StaticDiscovery
from parley.config import GatewayConfig, NodeConfig

KINDS = ("static", "kubernetes")
"""The accepted values of `--discovery`."""


def make_discovery(
    kind: str,
    *,
    nodes: dict[str, str],
    namespace: str,
    service: str,
    port: int,
    grace_seconds: float,
) -> Discovery:
    """The Discovery for `kind`, not yet started.

    Args:
        kind: "static" (uses nodes) or "kubernetes" (uses namespace, service,
            port and grace_seconds).
        nodes: {node_id: "host:port"} for static discovery.
        namespace: the node Service's namespace; empty means the pod's own.
        service: the headless node Service whose EndpointSlices list the nodes.
        port: the nodes' gRPC port when a slice has no port named "grpc".
        grace_seconds: how long a vanished node stays a member.

    Raises:
        ValueError: unknown kind, or static discovery without nodes.
        kubernetes.config.ConfigException: kubernetes discovery with neither
            in-cluster config nor a kubeconfig.
    """
    if kind == "static":
        if not nodes:
            raise ValueError("static discovery needs --nodes id=host:port,...")
        return StaticDiscovery(nodes)
    if kind == "kubernetes":
        # Imported here: only this choice needs the kubernetes client loaded.
        from parley.cluster.kubernetes import KubernetesDiscovery

        return KubernetesDiscovery(namespace, service, port, grace_seconds)
    raise ValueError(f"unknown discovery {kind!r}: want one of {', '.join(KINDS)}")


def discovery_from_config(cfg: NodeConfig | GatewayConfig) -> Discovery:
    """make_discovery() with the settings of a node's or gateway's config."""
    return make_discovery(
        cfg.discovery,
        nodes=cfg.nodes,
        namespace=cfg.k8s_namespace,
        service=cfg.k8s_service,
        port=cfg.k8s_port,
        grace_seconds=cfg.member_grace,
    )
