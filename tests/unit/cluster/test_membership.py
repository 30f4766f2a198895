"""Pure membership logic: EndpointSlices to members, and the grace period."""

from __future__ import annotations

from typing import Any

from parley.cluster.membership import GracefulMembers, members_from_slices


def slice_(name: str, endpoints: list[dict[str, Any]], port: int | None = 7100) -> dict[str, Any]:
    """An EndpointSlice as the API server returns it (only the fields read)."""
    ports = [{"name": "grpc", "port": port}] if port is not None else [{"name": "http", "port": 1}]
    return {"metadata": {"name": name}, "endpoints": endpoints, "ports": ports}


def ep(pod: str | None, ip: str, ready: bool | None = True, hostname: str | None = None) -> dict:
    """One endpoint; pod None leaves out targetRef, ready None leaves out the condition."""
    item: dict[str, Any] = {"addresses": [ip], "conditions": {}}
    if ready is not None:
        item["conditions"]["ready"] = ready
    if pod is not None:
        item["targetRef"] = {"kind": "Pod", "name": pod}
    if hostname is not None:
        item["hostname"] = hostname
    return item


def test_every_endpoint_ready_or_not_is_a_member() -> None:
    """Ready, not ready and unknown readiness all count, keyed by pod name."""
    slices = [slice_("a", [ep("n-0", "10.0.0.1"), ep("n-1", "10.0.0.2", ready=False)])]
    slices.append(slice_("b", [ep("n-2", "10.0.0.3", ready=None)]))
    assert members_from_slices(slices, 7000) == {
        "n-0": "10.0.0.1:7100",
        "n-1": "10.0.0.2:7100",
        "n-2": "10.0.0.3:7100",
    }


def test_port_falls_back_without_a_grpc_port() -> None:
    """A slice with no port named grpc uses the default port."""
    assert members_from_slices([slice_("a", [ep("n-0", "10.0.0.1")], None)], 7000) == {
        "n-0": "10.0.0.1:7000"
    }


def test_hostname_when_no_target_ref_and_skip_anonymous() -> None:
    """The hostname names an endpoint without targetRef; one with neither is skipped."""
    slices = [slice_("a", [ep(None, "10.0.0.1", hostname="h-0"), ep(None, "10.0.0.2")])]
    assert members_from_slices(slices, 7000) == {"h-0": "10.0.0.1:7100"}


def test_endpoint_without_addresses_is_skipped() -> None:
    """An endpoint with no address cannot be reached and is not listed."""
    item = ep("n-0", "10.0.0.1")
    item["addresses"] = []
    assert members_from_slices([slice_("a", [item])], 7000) == {}


def test_ipv6_addresses_are_bracketed() -> None:
    """IPv6 literals become [addr]:port, as gRPC targets need."""
    assert members_from_slices([slice_("a", [ep("n-0", "fd00::1")])], 7000) == {
        "n-0": "[fd00::1]:7100"
    }


def test_duplicate_node_prefers_ready_then_slice_name() -> None:
    """A node in two slices takes the ready endpoint, else the first slice by name."""
    stale = slice_("a", [ep("n-0", "10.0.0.1", ready=False), ep("n-1", "10.0.0.3")])
    fresh = slice_("b", [ep("n-0", "10.0.0.2"), ep("n-1", "10.0.0.4")])
    assert members_from_slices([fresh, stale], 7000) == {
        "n-0": "10.0.0.2:7100",
        "n-1": "10.0.0.3:7100",
    }


def test_vanished_node_stays_until_grace_ends() -> None:
    """A node missing from the listing is kept for grace seconds, then expires."""
    members = GracefulMembers(10.0)
    assert members.observe({"a": "1:1", "b": "2:2"}, now=0.0)
    assert not members.observe({"a": "1:1"}, now=1.0)
    assert members.members() == {"a": "1:1", "b": "2:2"}
    assert members.next_expiry() == 11.0
    assert not members.expire(now=10.9)
    assert members.expire(now=11.0)
    assert members.members() == {"a": "1:1"}
    assert members.next_expiry() is None


def test_returning_node_is_kept_with_its_new_address() -> None:
    """A node back within the grace period is never removed and takes its new address."""
    members = GracefulMembers(10.0)
    members.observe({"a": "1:1"}, now=0.0)
    members.observe({}, now=1.0)
    assert members.observe({"a": "9:9"}, now=5.0)
    assert members.next_expiry() is None
    assert not members.expire(now=100.0)
    assert members.members() == {"a": "9:9"}


def test_grace_restarts_after_a_return() -> None:
    """Vanishing again later starts a fresh grace period."""
    members = GracefulMembers(10.0)
    members.observe({"a": "1:1"}, now=0.0)
    members.observe({}, now=1.0)
    members.observe({"a": "1:1"}, now=2.0)
    members.observe({}, now=20.0)
    assert members.next_expiry() == 30.0


def test_zero_grace_removes_at_once() -> None:
    """With no grace a vanished node leaves on the same observation."""
    members = GracefulMembers(0.0)
    members.observe({"a": "1:1", "b": "2:2"}, now=0.0)
    assert members.observe({"a": "1:1"}, now=1.0)
    assert members.members() == {"a": "1:1"}


def test_members_is_a_copy() -> None:
    """Mutating the returned dict changes nothing."""
    members = GracefulMembers(1.0)
    members.observe({"a": "1:1"}, now=0.0)
    members.members()["b"] = "2:2"
    assert members.members() == {"a": "1:1"}
