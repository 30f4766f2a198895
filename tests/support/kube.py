"""Parley processes on this machine that discover nodes through the Kubernetes
API emulator (`support.k8s_emulator`), for tests and benchmarks of scaling.

One EndpointSlice per node, since each local "pod" has a port of its own.
Scaling is what Kubernetes does: a new pod's endpoint appears and the pod
starts; a removed pod gets SIGTERM and its endpoint goes.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import grpc
import yaml
from parley._generated import peer_service_pb2 as peer_pb
from parley._generated import peer_service_pb2_grpc as peer_grpc
from parley.cluster.placement import replicas_for

from support.cluster import LocalCluster
from support.k8s_emulator import K8sEmulator, endpoint
from support.wait import wait_for

MOVE_TIMEOUT = 90.0
"""Seconds rooms get to reach the groups placement names."""


def kubeconfig(path: Path, server: str, namespace: str = "default") -> str:
    """Write a kubeconfig for the emulator at `server`; returns its path."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulator", "cluster": {"server": server}}],
        "users": [{"name": "emulator", "user": {}}],
        "contexts": [
            {
                "name": "emulator",
                "context": {"cluster": "emulator", "user": "emulator", "namespace": namespace},
            }
        ],
        "current-context": "emulator",
    }
    path.write_text(yaml.safe_dump(config))
    return str(path)


class KubeCluster:
    """A LocalCluster whose processes discover nodes through the emulator."""

    def __init__(
        self,
        tmp_path: Path,
        emulator: K8sEmulator,
        nodes: int,
        grace: float = 3.0,
        move_concurrency: int = 8,
    ) -> None:
        self.emulator = emulator
        api = kubeconfig(tmp_path / "kubeconfig", emulator.url)
        discovery = ["--discovery", "kubernetes", "--k8s-namespace", "default"]
        discovery += ["--member-grace", str(grace)]
        self.cluster = LocalCluster(
            tmp_path / "cluster",
            nodes=nodes,
            gateways=1,
            store="sqlite",
            extra_env={"KUBECONFIG": api},
            node_args=[*discovery, "--move-concurrency", str(move_concurrency)],
            gateway_args=discovery,
            ready_timeout=60.0,
        )
        self.members: set[str] = set()

    def announce(self, node_id: str) -> None:
        """The pod's endpoint appears in the node Service's EndpointSlices."""
        port = int(self.cluster.node_addr(node_id).rpartition(":")[2])
        self.emulator.put_slice(
            f"parley-node-{node_id}",
            [endpoint(node_id, "127.0.0.1")],
            ports=[{"name": "grpc", "port": port, "protocol": "TCP"}],
        )
        self.members.add(node_id)

    def withdraw(self, node_id: str) -> None:
        """The pod is deleted: its endpoint goes."""
        self.emulator.delete_slice(f"parley-node-{node_id}")
        self.members.discard(node_id)

    async def scale_up(self, node_ids: list[str]) -> None:
        for node_id in node_ids:
            self.announce(node_id)
        await self.cluster.start_only(node_ids)

    async def retire(self, node_id: str) -> None:
        """Scale down by one pod: SIGTERM (it drains), its endpoint goes."""
        self.withdraw(node_id)
        self.cluster.kill_node(node_id, signal.SIGTERM)
        await self.cluster.wait_exit(node_id)

    async def locate(self, node_id: str, room: str) -> peer_pb.LocateRoomResponse | None:
        async with grpc.aio.insecure_channel(self.cluster.node_addr(node_id)) as channel:
            stub = peer_grpc.PeerServiceStub(channel)
            try:
                return await stub.LocateRoom(peer_pb.LocateRoomRequest(room=room), timeout=2)
            except grpc.aio.AioRpcError:
                return None

    async def on_placement(self, rooms: list[str]) -> bool:
        """Every room served by an administrator of its placement group over
        the current members, committed, not moving; no other live node holds it."""
        live = sorted(n for n in self.members if self.cluster.is_running(n))
        for room in rooms:
            want = set(replicas_for(room, self.members, self.cluster.replicas))
            answers = await asyncio.gather(*(self.locate(n, room) for n in live))
            holders = {n for n, a in zip(live, answers, strict=True) if a is not None and a.known}
            serving = [a for a in answers if a is not None and a.serving]
            if holders != want or len(serving) != 1:
                return False
            admin = serving[0]
            if set(admin.replicas) != want or admin.joining or not admin.committed:
                return False
        return True

    async def wait_placement(self, rooms: list[str], what: str) -> float:
        started = time.monotonic()
        await wait_for(lambda: self.on_placement(rooms), MOVE_TIMEOUT, interval=0.25, message=what)
        return time.monotonic() - started
