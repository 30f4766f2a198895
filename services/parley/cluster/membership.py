"""Pure membership logic of Kubernetes discovery: slices to members, and grace.

No I/O here: kubernetes.py feeds in what the API server says and the time.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from parley.cluster.discovery import Members

GRPC_PORT_NAME = "grpc"
"""The EndpointSlice port name whose number nodes listen on, when present."""


def members_from_slices(slices: Iterable[dict[str, Any]], default_port: int) -> Members:
    """The nodes in these EndpointSlices (raw API JSON), ready or not.

    A node's id is its endpoint's targetRef.name (the pod name), else its
    hostname; its address is the first IP with the slice's "grpc" port, else
    `default_port`. A node listed in more than one slice (during a slice
    rebalance, say) takes a ready endpoint over a not-ready one, then the
    slice that sorts first by name.

    Args:
        slices: EndpointSlice objects as JSON dicts (camelCase keys).
        default_port: the port when a slice has none named "grpc".
    """
    found: dict[str, tuple[bool, str]] = {}
    for item in sorted(slices, key=lambda s: s.get("metadata", {}).get("name", "")):
        port = _grpc_port(item) or default_port
        for endpoint in item.get("endpoints") or []:
            node_id = (endpoint.get("targetRef") or {}).get("name") or endpoint.get("hostname")
            addresses = endpoint.get("addresses") or []
            if not node_id or not addresses:
                continue
            # A missing ready condition means ready (the API's documented default).
            ready = (endpoint.get("conditions") or {}).get("ready") is not False
            if node_id in found and (found[node_id][0] or not ready):
                continue
            found[node_id] = (ready, _join_host_port(addresses[0], port))
    return {node_id: address for node_id, (_, address) in found.items()}


def _grpc_port(item: dict[str, Any]) -> int | None:
    for port in item.get("ports") or []:
        if port.get("name") == GRPC_PORT_NAME and port.get("port"):
            return int(port["port"])
    return None


def _join_host_port(host: str, port: int) -> str:
    """host:port, with IPv6 literals in brackets as gRPC targets need."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class GracefulMembers:
    """The member set, where a node that vanishes stays for a grace period.

    A restarting pod drops out of its EndpointSlice for a while; that is not a
    removal. Only a node absent for longer than the grace period (a scale-down)
    leaves. A node that comes back in time is simply kept, with its new address.
    Times are plain floats from one monotonic clock chosen by the caller.
    """

    def __init__(self, grace_seconds: float) -> None:
        """Start with no members.

        Args:
            grace_seconds: how long a vanished node stays a member.
        """
        self._grace = grace_seconds
        self._members: Members = {}
        self._vanished_at: dict[str, float] = {}

    def members(self) -> Members:
        """The current members (a copy)."""
        return dict(self._members)

    def observe(self, present: Members, now: float) -> bool:
        """Take in the nodes the API server lists now, and expire overdue ones.

        Returns:
            Whether the member set changed.
        """
        before = dict(self._members)
        for node_id, address in present.items():
            self._members[node_id] = address
            self._vanished_at.pop(node_id, None)
        for node_id in self._members.keys() - present.keys():
            self._vanished_at.setdefault(node_id, now)
        self.expire(now)
        return self._members != before

    def expire(self, now: float) -> bool:
        """Remove nodes vanished for at least the grace period.

        Returns:
            Whether any node was removed.
        """
        overdue = [n for n, t in self._vanished_at.items() if now >= t + self._grace]
        for node_id in overdue:
            del self._vanished_at[node_id]
            del self._members[node_id]
        return bool(overdue)

    def next_expiry(self) -> float | None:
        """When expire() will next remove a node, or None if no node is vanishing."""
        if not self._vanished_at:
            return None
        return min(self._vanished_at.values()) + self._grace
