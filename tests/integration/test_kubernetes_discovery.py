"""KubernetesDiscovery against an emulated API server over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import kubernetes.client
import pytest
from parley.cluster import kubernetes as k8s_discovery
from parley.cluster.discovery import Members
from parley.cluster.kubernetes import KubernetesDiscovery
from support.k8s_emulator import K8sEmulator, endpoint

# Every change must reach subscribers this fast (DESIGN §2; the task's bar).
PROMPT = 1.0
# Reconnecting after an API server restart goes through capped backoff.
RECONNECT = 10.0

GRPC_PORTS = [{"name": "grpc", "port": 7100, "protocol": "TCP"}]


class Recorder:
    """Collects every member set a Discovery publishes; waits for one that matches."""

    def __init__(self, discovery: KubernetesDiscovery) -> None:
        self.discovery = discovery
        self.seen: list[Members] = []
        self._changed = asyncio.Event()
        discovery.subscribe(self._on_change)

    def _on_change(self, members: Members) -> None:
        self.seen.append(members)
        self._changed.set()

    async def wait_for(self, predicate: Callable[[Members], bool], within: float) -> float:
        """Wait until the current members satisfy predicate; returns the seconds taken."""
        started = time.monotonic()
        async with asyncio.timeout(within):
            while not predicate(self.discovery.members()):
                self._changed.clear()
                await self._changed.wait()
        return time.monotonic() - started


@pytest.fixture
async def emulator() -> AsyncIterator[K8sEmulator]:
    """A running emulator with slices of two nodes of the parley-node Service."""
    server = K8sEmulator()
    await server.start()
    server.put_slice("parley-node-a", [endpoint("parley-node-0", "127.0.0.10")], ports=GRPC_PORTS)
    server.put_slice("parley-node-b", [endpoint("parley-node-1", "127.0.0.11")], ports=GRPC_PORTS)
    yield server
    await server.stop()


def make_discovery(server: K8sEmulator, grace: float = 300.0) -> KubernetesDiscovery:
    """A discovery of the parley-node Service in "default" through the emulator."""
    client = kubernetes.client.ApiClient(server.configuration())
    return KubernetesDiscovery("default", "parley-node", 7000, grace, api_client=client)


@pytest.fixture
async def discovery(emulator: K8sEmulator) -> AsyncIterator[KubernetesDiscovery]:
    """A started discovery with a long grace period."""
    started = make_discovery(emulator)
    await asyncio.wait_for(started.start(), 10)
    yield started
    await started.stop()


async def test_default_client_from_kubeconfig(
    emulator: K8sEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without api_client (outside a pod) the kubeconfig in KUBECONFIG is used."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(emulator.write_kubeconfig(tmp_path / "kubeconfig")))
    discovery = KubernetesDiscovery("default", "parley-node", 7000)
    await asyncio.wait_for(discovery.start(), 10)
    assert set(discovery.members()) == {"parley-node-0", "parley-node-1"}
    await discovery.stop()


async def test_start_lists_existing_endpoints(discovery: KubernetesDiscovery) -> None:
    """After start() the members are the pods of the slices, at the slice's grpc port."""
    assert discovery.members() == {
        "parley-node-0": "127.0.0.10:7100",
        "parley-node-1": "127.0.0.11:7100",
    }


async def test_other_services_and_namespaces_are_ignored(emulator: K8sEmulator) -> None:
    """Only slices labelled with our Service in our namespace count."""
    emulator.put_slice("gateway-a", [endpoint("gateway-0", "127.0.0.20")], service="gateway")
    emulator.put_slice("elsewhere", [endpoint("x-0", "127.0.0.21")], namespace="other")
    discovery = make_discovery(emulator)
    await asyncio.wait_for(discovery.start(), 10)
    recorder = Recorder(discovery)
    emulator.put_slice("gateway-a", [endpoint("gateway-1", "127.0.0.22")], service="gateway")
    emulator.put_slice("parley-node-c", [endpoint("parley-node-2", "127.0.0.12")])
    await recorder.wait_for(lambda m: "parley-node-2" in m, PROMPT)
    assert set(discovery.members()) == {"parley-node-0", "parley-node-1", "parley-node-2"}
    await discovery.stop()


async def test_added_endpoint_reaches_subscribers(
    emulator: K8sEmulator, discovery: KubernetesDiscovery
) -> None:
    """A new endpoint is a member within a second, with the fallback port when unnamed."""
    recorder = Recorder(discovery)
    emulator.put_slice("parley-node-c", [endpoint("parley-node-2", "127.0.0.12")], ports=[])
    took = await recorder.wait_for(lambda m: "parley-node-2" in m, PROMPT)
    print(f"add seen in {took * 1000:.1f} ms")
    assert discovery.members()["parley-node-2"] == "127.0.0.12:7000"
    assert recorder.seen[-1] == discovery.members()


async def test_hostname_names_a_node_without_target_ref(
    emulator: K8sEmulator, discovery: KubernetesDiscovery
) -> None:
    """An endpoint without targetRef is named by its hostname."""
    recorder = Recorder(discovery)
    emulator.put_slice(
        "parley-node-c", [endpoint("ignored", "127.0.0.13", hostname="node-x", target=False)]
    )
    await recorder.wait_for(lambda m: "node-x" in m, PROMPT)
    assert "ignored" not in discovery.members()


async def test_not_ready_endpoints_are_members(
    emulator: K8sEmulator, discovery: KubernetesDiscovery
) -> None:
    """Flipping readiness keeps a node; a new not-ready endpoint joins at once."""
    recorder = Recorder(discovery)
    emulator.put_slice(
        "parley-node-a", [endpoint("parley-node-0", "127.0.0.10", ready=False)], ports=GRPC_PORTS
    )
    emulator.put_slice(
        "parley-node-c", [endpoint("parley-node-2", "127.0.0.12", ready=False)], ports=GRPC_PORTS
    )
    # Events arrive in order: once node-2 is seen, the readiness flip was applied too.
    await recorder.wait_for(lambda m: "parley-node-2" in m, PROMPT)
    emulator.put_slice("parley-node-a", [endpoint("parley-node-0", "127.0.0.10")], ports=GRPC_PORTS)
    emulator.put_slice("parley-node-d", [endpoint("parley-node-3", "127.0.0.13")], ports=GRPC_PORTS)
    await recorder.wait_for(lambda m: "parley-node-3" in m, PROMPT)
    assert all("parley-node-0" in members for members in recorder.seen)
    assert discovery.members()["parley-node-0"] == "127.0.0.10:7100"


async def test_removed_node_leaves_after_grace(emulator: K8sEmulator) -> None:
    """A vanished node stays a member for the grace period, then is removed."""
    discovery = make_discovery(emulator, grace=0.5)
    await asyncio.wait_for(discovery.start(), 10)
    recorder = Recorder(discovery)
    emulator.delete_slice("parley-node-b")
    removed_at = time.monotonic()
    took = await recorder.wait_for(lambda m: "parley-node-1" not in m, 0.5 + PROMPT)
    print(f"removal after {took * 1000:.0f} ms with 500 ms grace")
    assert time.monotonic() - removed_at >= 0.5
    assert recorder.seen == [{"parley-node-0": "127.0.0.10:7100"}]
    await discovery.stop()


async def test_pod_restart_within_grace_is_not_a_removal(emulator: K8sEmulator) -> None:
    """A node back before its grace ends is kept throughout, with its new address."""
    discovery = make_discovery(emulator, grace=2.0)
    await asyncio.wait_for(discovery.start(), 10)
    recorder = Recorder(discovery)
    emulator.put_slice("parley-node-b", [], ports=GRPC_PORTS)
    emulator.put_slice("parley-node-b", [endpoint("parley-node-1", "127.0.0.31")], ports=GRPC_PORTS)
    await recorder.wait_for(lambda m: m.get("parley-node-1") == "127.0.0.31:7100", PROMPT)
    # Past the original grace deadline the node is still there.
    emulator.put_slice("parley-node-c", [endpoint("parley-node-2", "127.0.0.12")])
    await recorder.wait_for(lambda m: "parley-node-2" in m, PROMPT)
    assert all("parley-node-1" in members for members in recorder.seen)
    await discovery.stop()


async def test_forced_410_relists(emulator: K8sEmulator, discovery: KubernetesDiscovery) -> None:
    """After 410 Gone the client relists and sees changes whose events were lost."""
    recorder = Recorder(discovery)
    lists_before = emulator.requests.count("list")
    emulator.put_slice(
        "parley-node-c", [endpoint("parley-node-2", "127.0.0.12")], ports=GRPC_PORTS, silent=True
    )
    emulator.force_gone()
    took = await recorder.wait_for(lambda m: "parley-node-2" in m, PROMPT)
    print(f"410 relist seen in {took * 1000:.1f} ms")
    assert emulator.requests.count("list") == lists_before + 1
    # The new watch resumes from the relist: later changes flow again.
    emulator.put_slice("parley-node-d", [endpoint("parley-node-3", "127.0.0.13")])
    await recorder.wait_for(lambda m: "parley-node-3" in m, PROMPT)


async def test_api_server_restart_is_survived(
    emulator: K8sEmulator, discovery: KubernetesDiscovery
) -> None:
    """Connections dropped by a restart are resumed from the last resourceVersion."""
    recorder = Recorder(discovery)
    lists_before = emulator.requests.count("list")
    await emulator.stop()
    # Down for a while (not a synchronisation): reconnects are refused and back off.
    await asyncio.sleep(1.0)
    await emulator.start()
    emulator.put_slice("parley-node-c", [endpoint("parley-node-2", "127.0.0.12")])
    took = await recorder.wait_for(lambda m: "parley-node-2" in m, RECONNECT)
    print(f"change after restart seen in {took * 1000:.0f} ms")
    # It resumed the watch; a relist was not needed.
    assert emulator.requests.count("list") == lists_before


async def test_watch_timeout_resumes_without_relisting(
    emulator: K8sEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A watch the server ends after timeoutSeconds is resumed, not relisted."""
    monkeypatch.setattr(k8s_discovery, "WATCH_SECONDS", 1)
    discovery = make_discovery(emulator)
    await asyncio.wait_for(discovery.start(), 10)
    recorder = Recorder(discovery)
    # Each watch lasts one second: the third one means two ended and were resumed.
    await emulator.wait_requests("watch", 3, timeout=10)
    emulator.put_slice("parley-node-c", [endpoint("parley-node-2", "127.0.0.12")])
    await recorder.wait_for(lambda m: "parley-node-2" in m, PROMPT)
    assert emulator.requests.count("list") == 1
    await discovery.stop()


async def test_new_api_server_without_state_is_relisted(emulator: K8sEmulator) -> None:
    """A fresh server on the same port (unknown versions) answers 410; the client relists."""
    discovery = make_discovery(emulator, grace=0.5)
    await asyncio.wait_for(discovery.start(), 10)
    recorder = Recorder(discovery)
    port = emulator.port
    await emulator.stop()
    replacement = K8sEmulator(port=port)
    await replacement.start()
    try:
        replacement.put_slice("parley-node-a", [endpoint("parley-node-0", "127.0.0.40")])
        took = await recorder.wait_for(
            lambda m: m == {"parley-node-0": "127.0.0.40:7000"}, RECONNECT
        )
        print(f"new API server state seen in {took * 1000:.0f} ms")
        assert "list" in replacement.requests
    finally:
        await discovery.stop()
        await replacement.stop()


async def test_start_waits_for_the_api_server(emulator: K8sEmulator) -> None:
    """start() retries until the API server answers, then returns the first list."""
    port = emulator.port
    await emulator.stop()
    discovery = make_discovery(emulator)
    starting = asyncio.create_task(discovery.start())
    replacement = K8sEmulator(port=port)
    await replacement.start()
    replacement.put_slice("parley-node-a", [endpoint("parley-node-0", "127.0.0.50")])
    await asyncio.wait_for(starting, RECONNECT)
    assert discovery.members() == {"parley-node-0": "127.0.0.50:7000"}
    await discovery.stop()
    await replacement.stop()


async def test_stop_is_prompt_with_an_open_watch(
    emulator: K8sEmulator, discovery: KubernetesDiscovery
) -> None:
    """stop() interrupts a blocked watch instead of waiting for it to time out."""
    await emulator.wait_watching(1)
    started = time.monotonic()
    await discovery.stop()
    assert time.monotonic() - started < 2.0
    emulator.put_slice("parley-node-c", [endpoint("parley-node-2", "127.0.0.12")])
    assert "parley-node-2" not in discovery.members()


async def test_stop_ends_a_waiting_start(emulator: K8sEmulator) -> None:
    """stop() while start() still waits for an unreachable API server ends both."""
    await emulator.stop()
    discovery = make_discovery(emulator)
    starting = asyncio.create_task(discovery.start())
    await asyncio.wait_for(discovery.stop(), 5)
    await asyncio.wait_for(starting, 1)
    assert discovery.members() == {}
