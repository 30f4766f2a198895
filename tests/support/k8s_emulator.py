"""A small Kubernetes API server emulator for EndpointSlices, over real HTTP.

It serves what Parley's Kubernetes discovery (and `kubectl get endpointslices`)
needs, with the semantics that matter for list + watch:

* `GET /apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices` lists, with
  `labelSelector` (`k=v`, `k==v`, `k!=v`, comma-separated) and the list's
  `metadata.resourceVersion`;
* the same path with `?watch=true` streams JSON lines (chunked), starting after
  `resourceVersion` (or with synthetic ADDED events when it is absent or "0"),
  ending after `timeoutSeconds`; a resourceVersion older than the last
  compaction (or unknown to this server) gets an `ERROR` event with a 410
  Status, as the real API server does;
* `GET /apis/discovery.k8s.io/v1/endpointslices` lists every namespace.

Tests drive it from the event loop it runs on:

    emulator = K8sEmulator()
    await emulator.start()
    emulator.put_slice("parley-node-abc", [endpoint("parley-node-0", "127.0.0.1")])
    client = kubernetes.client.ApiClient(emulator.configuration())
    # or, for a child process: env KUBECONFIG=emulator.write_kubeconfig(tmp_path / "kubeconfig")
    ...
    emulator.force_gone()         # every open watch gets 410 Gone
    await emulator.restart()      # connections drop; state and versions survive
    await emulator.stop()

A new `K8sEmulator(port=old.port)` is an API server restarted without its
state: it starts at higher resource versions, so clients resuming an old one
get 410 and relist.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import kubernetes.client

SERVICE_LABEL = "kubernetes.io/service-name"
_PREFIX = "/apis/discovery.k8s.io/v1"

JSON = dict[str, Any]


def endpoint(
    pod: str, ip: str, *, ready: bool = True, hostname: str | None = None, target: bool = True
) -> JSON:
    """One EndpointSlice endpoint for a pod.

    Args:
        pod: the pod name, used as targetRef.name.
        ip: the pod IP (use 127.0.0.x in tests).
        ready: conditions.ready.
        hostname: the endpoint hostname (a StatefulSet pod's name); defaults to pod.
        target: False leaves out targetRef, so only the hostname names the node.
    """
    item: JSON = {
        "addresses": [ip],
        "conditions": {"ready": ready, "serving": ready, "terminating": False},
        "hostname": hostname if hostname is not None else pod,
    }
    if target:
        item["targetRef"] = {"kind": "Pod", "name": pod, "namespace": "default"}
    return item


@dataclass(eq=False)
class _Watch:
    """One open watch stream: its filter and the queue of events to send."""

    namespace: str | None
    selector: str
    queue: asyncio.Queue[JSON | None] = field(default_factory=asyncio.Queue)


@dataclass
class _State:
    """What survives restart(): objects, versions, history."""

    objects: dict[tuple[str, str], JSON] = field(default_factory=dict)
    history: list[tuple[int, JSON]] = field(default_factory=list)
    # Resource versions continue across emulator instances (like etcd's would
    # not, after losing its data): a fresh emulator never honours an old one's.
    version: int = field(default_factory=lambda: time.monotonic_ns() // 1000)
    compacted: int = 0

    def __post_init__(self) -> None:
        self.compacted = self.version


class K8sEmulator:
    """An EndpointSlice API server on 127.0.0.1 (see the module docstring)."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        """Prepare a server; nothing listens until start().

        Args:
            port: 0 for a free port, or the port of a stopped emulator to replace it.
            host: the address to listen on; keep it in 127.0.0.0/8.
        """
        self.host = host
        self.port = port
        self.requests: list[str] = []
        """One entry per request served: "list" or "watch", in order."""
        self._state = _State()
        self._watches: set[_Watch] = set()
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._watches_changed = asyncio.Event()
        self._requested = asyncio.Event()

    @property
    def url(self) -> str:
        """The base URL, e.g. for `kubectl --server`."""
        return f"http://{self.host}:{self.port}"

    def configuration(self) -> kubernetes.client.Configuration:
        """A client Configuration pointing at this emulator."""
        return kubernetes.client.Configuration(host=self.url)

    def write_kubeconfig(self, path: Path) -> Path:
        """Write a kubeconfig for this emulator, for processes started with KUBECONFIG=path.

        Returns:
            path.
        """
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "emulator",
                    "clusters": [{"name": "emulator", "cluster": {"server": self.url}}],
                    "contexts": [
                        {"name": "emulator", "context": {"cluster": "emulator", "user": "test"}}
                    ],
                    "users": [{"name": "test", "user": {}}],
                }
            )
        )
        return path

    async def start(self) -> None:
        """Listen; returns once connections are accepted."""
        self._server = await asyncio.start_server(
            self._serve_connection, self.host, self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and drop every connection mid-stream, like a crashed server."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        self._watches.clear()

    async def restart(self) -> None:
        """stop() then start() on the same port, keeping objects and versions."""
        await self.stop()
        await self.start()

    @property
    def watch_count(self) -> int:
        """How many watch streams are open now."""
        return len(self._watches)

    async def wait_requests(self, kind: str, count: int, timeout: float = 5.0) -> None:
        """Wait until at least `count` requests of `kind` ("list", "watch") were served.

        Raises:
            TimeoutError: fewer were served after `timeout` seconds.
        """
        async with asyncio.timeout(timeout):
            while self.requests.count(kind) < count:
                self._requested.clear()
                await self._requested.wait()

    async def wait_watching(self, count: int = 1, timeout: float = 5.0) -> None:
        """Wait until at least `count` watch streams are open.

        Raises:
            TimeoutError: fewer are open after `timeout` seconds.
        """
        async with asyncio.timeout(timeout):
            while len(self._watches) < count:
                self._watches_changed.clear()
                await self._watches_changed.wait()

    def put_slice(
        self,
        name: str,
        endpoints: list[JSON],
        *,
        service: str = "parley-node",
        namespace: str = "default",
        ports: list[JSON] | None = None,
        silent: bool = False,
    ) -> JSON:
        """Create or replace an EndpointSlice; watchers get ADDED or MODIFIED.

        Args:
            name: the slice name.
            endpoints: its endpoints, e.g. from endpoint().
            service: the Service it belongs to (the kubernetes.io/service-name label).
            namespace: its namespace.
            ports: its ports; default one TCP port named "grpc", 7000.
            silent: change the state without a watch event, as if the event
                were lost to compaction; only a relist (see force_gone) shows it.

        Returns:
            The stored object.
        """
        key = (namespace, name)
        kind = "MODIFIED" if key in self._state.objects else "ADDED"
        previous = self._state.objects.get(key, {}).get("metadata", {})
        obj: JSON = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": previous.get("uid", str(uuid.uuid4())),
                "labels": {SERVICE_LABEL: service},
                "resourceVersion": "",
            },
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": ports
            if ports is not None
            else [{"name": "grpc", "port": 7000, "protocol": "TCP"}],
        }
        self._state.objects[key] = obj
        self._emit(kind, obj, silent)
        return obj

    def delete_slice(self, name: str, *, namespace: str = "default", silent: bool = False) -> None:
        """Delete an EndpointSlice; watchers get DELETED.

        Raises:
            KeyError: there is no such slice.
        """
        obj = self._state.objects.pop((namespace, name))
        self._emit("DELETED", obj, silent)

    def force_gone(self) -> None:
        """Compact history and end every open watch with a 410 Gone ERROR event.

        Clients must relist: resuming any earlier resourceVersion gets 410 too.
        """
        state = self._state
        state.history.clear()
        state.version += 1
        state.compacted = state.version
        gone = _status(410, "Expired", "too old resource version (forced by the emulator)")
        for watch in list(self._watches):
            watch.queue.put_nowait({"type": "ERROR", "object": gone})
            watch.queue.put_nowait(None)

    def _emit(self, kind: str, obj: JSON, silent: bool) -> None:
        state = self._state
        state.version += 1
        obj["metadata"]["resourceVersion"] = str(state.version)
        event = {"type": kind, "object": json.loads(json.dumps(obj))}
        if silent:
            # Nobody can resume from before this change: the event is gone.
            state.history.clear()
            state.compacted = state.version
            return
        state.history.append((state.version, event))
        for watch in self._watches:
            if _matches(event["object"], watch.namespace, watch.selector):
                watch.queue.put_nowait(event)

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Serve HTTP/1.1 requests on one connection until it closes."""
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while await self._serve_request(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away
        finally:
            self._connections.discard(task)
            writer.transport.abort()

    async def _serve_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Serve one request; False when the connection must close."""
        request_line = await reader.readline()
        if not request_line:
            return False
        method, target, _ = request_line.decode("latin-1").split(" ", 2)
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if length := int(headers.get("content-length", "0")):
            await reader.readexactly(length)

        url = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        known, namespace = _namespace_of(url.path)
        if method != "GET" or not known:
            await _send_json(writer, 404, _status(404, "NotFound", f"{method} {url.path}"))
            return True
        selector = query.get("labelSelector", "")
        if query.get("watch") in ("true", "1"):
            self.requests.append("watch")
            self._requested.set()
            await self._serve_watch(writer, namespace, selector, query)
            return False
        self.requests.append("list")
        self._requested.set()
        items = [
            obj
            for obj in sorted(self._state.objects.values(), key=_object_key)
            if _matches(obj, namespace, selector)
        ]
        body = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSliceList",
            "metadata": {"resourceVersion": str(self._state.version)},
            "items": items,
        }
        await _send_json(writer, 200, body)
        return True

    async def _serve_watch(
        self,
        writer: asyncio.StreamWriter,
        namespace: str | None,
        selector: str,
        query: dict[str, str],
    ) -> None:
        """Stream watch events as chunked JSON lines until timeout, 410 or stop()."""
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )
        watch = _Watch(namespace, selector)
        state = self._state
        since = query.get("resourceVersion", "")
        if since in ("", "0"):
            for obj in sorted(state.objects.values(), key=_object_key):
                if _matches(obj, namespace, selector):
                    watch.queue.put_nowait({"type": "ADDED", "object": obj})
        elif not since.isdigit() or not state.compacted <= int(since) <= state.version:
            gone = _status(410, "Expired", f"too old resource version: {since}")
            watch.queue.put_nowait({"type": "ERROR", "object": gone})
            watch.queue.put_nowait(None)
        else:
            for version, event in state.history:
                if version > int(since) and _matches(event["object"], namespace, selector):
                    watch.queue.put_nowait(event)
        self._watches.add(watch)
        self._watches_changed.set()
        timeout = float(query.get("timeoutSeconds", "1800"))
        try:
            async with asyncio.timeout(timeout):
                while (event := await watch.queue.get()) is not None:
                    data = json.dumps(event).encode() + b"\n"
                    writer.write(b"%x\r\n%s\r\n" % (len(data), data))
                    await writer.drain()
        except TimeoutError:
            pass  # the client asked for a bounded watch
        finally:
            self._watches.discard(watch)
            self._watches_changed.set()
        with contextlib.suppress(ConnectionError):
            writer.write(b"0\r\n\r\n")
            await writer.drain()


def _namespace_of(path: str) -> tuple[bool, str | None]:
    """Whether path is an endpointslices collection, and its namespace (None: all)."""
    if path == f"{_PREFIX}/endpointslices":
        return True, None
    parts = path.removeprefix(_PREFIX + "/").split("/")
    if (
        path.startswith(_PREFIX + "/")
        and len(parts) == 3
        and parts[0] == "namespaces"
        and parts[2] == "endpointslices"
    ):
        return True, parts[1]
    return False, None


def _matches(obj: JSON, namespace: str | None, selector: str) -> bool:
    """Whether the object is in the namespace (None: any) and matches the label selector."""
    meta = obj["metadata"]
    if namespace is not None and meta.get("namespace") != namespace:
        return False
    labels = meta.get("labels") or {}
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        else:
            key, _, value = term.replace("==", "=").partition("=")
            if labels.get(key) != value:
                return False
    return True


def _object_key(obj: JSON) -> tuple[str, str]:
    return obj["metadata"]["namespace"], obj["metadata"]["name"]


def _status(code: int, reason: str, message: str) -> JSON:
    """A metav1.Status failure object."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


async def _send_json(writer: asyncio.StreamWriter, code: int, body: JSON) -> None:
    data = json.dumps(body).encode()
    reason = {200: "OK", 404: "Not Found"}.get(code, "Error")
    writer.write(
        f"HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n".encode()
        + data
    )
    await writer.drain()
