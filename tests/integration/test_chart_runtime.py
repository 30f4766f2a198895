"""The chart's pods, run for real: the rendered env starts processes that chat.

The chart is rendered with helm-python-sdk; the node StatefulSet's and gateway
Deployment's containers give the command (the image's ENTRYPOINT, as the chart
sets none) and the environment. The test resolves the environment as the
kubelet would (downward API: pod name and namespace), rewrites only addresses
(`0.0.0.0:PORT` → a free 127.0.0.1 port; the API server → an emulator, through
KUBECONFIG) and volume mount paths (→ a temporary directory per pod, holding
the files of a mounted Secret as the kubelet writes them), starts
the real `parley node` / `parley gateway` processes with exactly that, serves
the EndpointSlices Kubernetes would publish for the headless Service, waits on
the chart's own readiness probes, and chats through the gateway over a WebSocket.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml
from parley.supervisor import grpc_serving, http_status
from support.k8s_emulator import K8sEmulator, endpoint
from support.kube import kubeconfig
from support.wait import wait_for
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "parley"
RELEASE = "parley"
NAMESPACE = "parley-test"
NODES = 3
START_TIMEOUT = 60.0

pytestmark = pytest.mark.timeout(240)


def render() -> list[dict[str, Any]]:
    """The chart's objects for release "parley" with default values."""
    try:
        import helm_python as helm
    except ImportError:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip("helm-python-sdk is not installed (pip install -e '.[test]')")
    with helm.Chart.load(CHART) as chart:
        texts = chart.render(values={}, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return [
        doc
        for path, text in sorted(texts.items())
        if path.endswith(".yaml")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The single object of a kind."""
    (found,) = [obj for obj in objects if obj["kind"] == kind]
    return found


def entrypoint(component: str) -> list[str]:
    """The exec-form ENTRYPOINT of Dockerfile.<component>, with `parley` from this venv."""
    text = (ROOT / f"Dockerfile.{component}").read_text()
    (line,) = [ln for ln in text.splitlines() if ln.startswith("ENTRYPOINT")]
    command = json.loads(line.removeprefix("ENTRYPOINT").strip())
    parley = shutil.which("parley", path=str(Path(sys.executable).parent))
    assert parley, "the parley console script is not installed in this environment"
    return [parley, *command[1:]]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def secrets_of(objects: list[dict[str, Any]]) -> dict[str, dict[str, bytes]]:
    """The rendered Secrets' data by name."""
    return {
        obj["metadata"]["name"]: {k: base64.b64decode(v) for k, v in obj.get("data", {}).items()}
        for obj in objects
        if obj["kind"] == "Secret"
    }


class Pod:
    """One container of a rendered pod template, run as a local process."""

    def __init__(
        self,
        name: str,
        template: dict[str, Any],
        command: list[str],
        workdir: Path,
        api: str,
        secrets: dict[str, dict[str, bytes]],
    ) -> None:
        self.name = name
        self.secrets = secrets
        self.volumes = {v["name"]: v for v in template["spec"].get("volumes", [])}
        self.grace = float(template["spec"]["terminationGracePeriodSeconds"])
        (self.container,) = template["spec"]["containers"]
        self.command = [
            *command,
            *self.container.get("command", []),
            *self.container.get("args", []),
        ]
        self.ports: dict[int, int] = {}  # container port -> local port
        self.log_path = workdir / f"{name}.log"
        self.env = self._environment(workdir, api)
        self.process: asyncio.subprocess.Process | None = None

    def local(self, container_port: int | str) -> str:
        """127.0.0.1:PORT where this container's port (number or name) is served."""
        if isinstance(container_port, str):
            by_name = {p["name"]: p["containerPort"] for p in self.container["ports"]}
            container_port = by_name[container_port]
        return f"127.0.0.1:{self.ports[container_port]}"

    def _environment(self, workdir: Path, api: str) -> dict[str, str]:
        """The container env as the kubelet sets it, with addresses and mounts rewritten."""
        fields = {"metadata.name": self.name, "metadata.namespace": NAMESPACE}
        mounts: dict[str, str] = {}
        for mount in self.container.get("volumeMounts", []):
            local = workdir / self.name / mount["name"]
            local.mkdir(parents=True, exist_ok=True)
            mounts[mount["mountPath"]] = str(local)
            secret = self.volumes.get(mount["name"], {}).get("secret")  # (a claim: not here)
            if secret is not None:
                data = self.secrets[secret["secretName"]]
                for item in secret.get("items") or [{"key": k, "path": k} for k in data]:
                    (local / item["path"]).write_bytes(data[item["key"]])
        env: dict[str, str] = {}
        for item in self.container.get("env", []):
            if "value" in item:
                value = str(item["value"])
            else:
                value = fields[item["valueFrom"]["fieldRef"]["fieldPath"]]
            listen = re.fullmatch(r"0\.0\.0\.0:(\d+)", value)
            if listen:
                port = int(listen.group(1))
                self.ports.setdefault(port, free_port())
                value = f"127.0.0.1:{self.ports[port]}"
            for path, local_path in mounts.items():  # a mount, or a file in one
                if value == path or value.startswith(path + "/"):
                    value = local_path + value[len(path) :]
            env[item["name"]] = value
        declared = {p["containerPort"] for p in self.container["ports"]}
        assert set(self.ports) == declared, (
            f"{self.name}: listens on {self.ports}, declares {declared}"
        )
        # Where the process finds the API server: the emulator instead of in-cluster config.
        env["KUBECONFIG"] = api
        env["PATH"] = os.environ.get("PATH", "/usr/bin:/bin")
        return env

    async def start(self) -> None:
        """Start the process in a session of its own, logging to log_path."""
        with self.log_path.open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                *self.command,
                env=self.env,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,
            )

    async def ready(self) -> bool:
        """What the chart's readiness probe would say."""
        probe = self.container["readinessProbe"]
        if "grpc" in probe:
            return await grpc_serving(self.local(probe["grpc"]["port"]))
        http = probe["httpGet"]
        return await http_status(self.local(http["port"]), http["path"]) == 200

    async def stop(self) -> bool:
        """SIGTERM (as Kubernetes does), then SIGKILL after the pod's grace period.

        Returns:
            True when the process exited on its own, with status 0, within the grace period.
        """
        if self.process is None or self.process.returncode is not None:
            return self.process is not None and self.process.returncode == 0
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), self.grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            await self.process.wait()
            return False
        return self.process.returncode == 0

    def log_tail(self, lines: int = 40) -> str:
        """The end of the process's output."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return f"--- {self.name} ---\n" + "\n".join(text.splitlines()[-lines:])


@pytest.fixture
async def deployment(
    tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[dict[str, Any]]:
    """The chart's node and gateway pods running locally against an emulated API server."""
    objects = render()
    secrets = secrets_of(objects)
    statefulset = one(objects, "StatefulSet")
    deployment = one(objects, "Deployment")
    headless = [
        s for s in objects if s["kind"] == "Service" and s["spec"].get("clusterIP") == "None"
    ]
    (service,) = headless
    assert statefulset["spec"]["serviceName"] == service["metadata"]["name"]
    grpc_port_name = next(p["name"] for p in service["spec"]["ports"] if p["port"] == 7000)

    emulator = K8sEmulator()
    await emulator.start()
    api = kubeconfig(tmp_path / "kubeconfig", emulator.url, NAMESPACE)
    sts_name = statefulset["metadata"]["name"]
    nodes = [
        Pod(
            f"{sts_name}-{i}",
            statefulset["spec"]["template"],
            entrypoint("node"),
            tmp_path,
            api,
            secrets,
        )
        for i in range(NODES)
    ]
    gateway = Pod(
        f"{deployment['metadata']['name']}-5d8c7b9f4-x2x7k",
        deployment["spec"]["template"],
        entrypoint("gateway"),
        tmp_path,
        api,
        secrets,
    )
    # What the EndpointSlice controller publishes for the headless Service: every
    # pod (publishNotReadyAddresses), one slice per pod here since each local
    # "pod IP" is 127.0.0.1 with a port of its own.
    for pod in nodes:
        port = int(pod.local("grpc").rpartition(":")[2])
        emulator.put_slice(
            f"{service['metadata']['name']}-{pod.name}",
            [endpoint(pod.name, "127.0.0.1")],
            service=service["metadata"]["name"],
            namespace=NAMESPACE,
            ports=[{"name": grpc_port_name, "port": port, "protocol": "TCP"}],
        )
    pods = [*nodes, gateway]
    try:
        for pod in pods:
            await pod.start()
        for pod in pods:
            await wait_for(pod.ready, START_TIMEOUT, interval=0.2, message=f"{pod.name} ready")
        yield {"gateway": gateway, "nodes": nodes, "emulator": emulator, "secrets": secrets}
    finally:
        # All at once, as when the release is uninstalled; each drains for its own time.
        await asyncio.gather(*(pod.stop() for pod in pods))
        await emulator.stop()
        failed = getattr(request.node, "rep_call", None)
        if failed is None or failed.failed:
            for pod in pods:
                print(pod.log_tail())


async def reply(ws: ClientConnection, kind: str, timeout: float = 20.0) -> dict[str, Any]:
    """The next frame of type `kind` (an error frame fails the test)."""
    async with asyncio.timeout(timeout):
        while True:
            frame = json.loads(await ws.recv())
            assert frame.get("type") != "error", frame
            if frame.get("type") == kind:
                return frame


async def test_chart_pods_chat_through_the_gateway(deployment: dict[str, Any]) -> None:
    """Rendered env, emulated slices: alice reaches bob, across an administrator's restart."""
    gateway: Pod = deployment["gateway"]
    url = f"ws://{gateway.local('ws')}/ws"
    # Auth is on by default: sign tokens with the key the chart generated.
    key = deployment["secrets"]["parley-auth"]["jwt-secret"].decode()
    alice_token = jwt.encode({"sub": "alice", "exp": time.time() + 600}, key, algorithm="HS256")
    bob_header = {"Authorization": "Bearer " + jwt.encode({"sub": "bob"}, key, algorithm="HS256")}
    with pytest.raises(InvalidStatus):  # ?user= is not believed
        async with connect(f"{url}?user=alice", open_timeout=10):
            pass
    async with (
        connect(f"{url}?token={alice_token}", open_timeout=10) as alice,
        connect(url, open_timeout=10, additional_headers=bob_header) as bob,
    ):
        await alice.send(json.dumps({"type": "create", "room": "k8s", "id": "c"}))
        assert (await reply(alice, "created"))["owner"] == "alice"
        for ws in (alice, bob):
            await ws.send(json.dumps({"type": "join", "room": "k8s", "id": "j"}))
            await reply(ws, "joined")
        await alice.send(json.dumps({"type": "send", "room": "k8s", "text": "hi", "id": "m1"}))
        ack = await reply(alice, "ack")
        message = await reply(bob, "message")
        assert (message["from"], message["text"], message["seq"]) == ("alice", "hi", ack["seq"])

        # The room's administrator pod is deleted: it drains and exits within its grace
        # period, another replica takes the room over, and the conversation goes on.
        await alice.send(json.dumps({"type": "rooms", "id": "r"}))
        (room,) = [r for r in (await reply(alice, "rooms"))["rooms"] if r["room"] == "k8s"]
        (administrator,) = [n for n in deployment["nodes"] if n.name == room["administrator"]]
        assert await administrator.stop(), f"{administrator.name} did not exit cleanly in time"
        await alice.send(json.dumps({"type": "send", "room": "k8s", "text": "still", "id": "m2"}))
        after = await reply(alice, "ack")
        message = await reply(bob, "message")
        assert after["seq"] == ack["seq"] + 1
        assert (message["text"], message["seq"]) == ("still", after["seq"])

    spec = importlib.util.spec_from_file_location(
        "helm_test_chat", CHART / "files" / "helm-test-chat.py"
    )
    assert spec and spec.loader
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    os.environ["PARLEY_JWT_SECRET"] = key  # what the helm test pod reads from its file
    try:
        assert await script.main(url, 60) == 0
    finally:
        del os.environ["PARLEY_JWT_SECRET"]
