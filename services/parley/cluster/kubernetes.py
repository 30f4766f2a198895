"""Kubernetes discovery: the EndpointSlices of the headless node Service.

The official client is synchronous, so one background thread lists the
slices, then watches from the list's resourceVersion: resuming on the last
version seen after a dropped connection, relisting on 410 Gone, retrying
with capped exponential backoff while the API server is unreachable. It
hands each new set of present nodes to the event loop, where GracefulMembers
keeps vanished nodes for the grace period and subscribers are told.

Needs RBAC `get`, `list`, `watch` on `endpointslices` (discovery.k8s.io).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes.client
import kubernetes.config
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from parley.cluster.discovery import Members
from parley.cluster.membership import GracefulMembers, members_from_slices
from parley.cluster.subscribers import Subscribers
from parley.observability.log import get_logger

log = get_logger(__name__)

NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
"""Where a pod finds its own namespace."""
SERVICE_LABEL = "kubernetes.io/service-name"
"""The label tying an EndpointSlice to its Service."""

WATCH_SECONDS = 240
"""Server-side length of one watch request; the next resumes where it ended."""
CONNECT_TIMEOUT = 5.0
"""Seconds to connect to the API server before retrying."""
READ_TIMEOUT = WATCH_SECONDS + 30.0
"""Seconds of silence after which a watch connection counts as dead."""
BACKOFF_MIN = 0.1
"""First retry delay after an API error."""
BACKOFF_MAX = 5.0
"""Longest retry delay while the API server stays unreachable."""


class _Gone(Exception):
    """The API server no longer has our resourceVersion (410): relist."""


class KubernetesDiscovery:
    """A Discovery over the EndpointSlices of one Service."""

    def __init__(
        self,
        namespace: str,
        service: str,
        port: int,
        grace_seconds: float = 300.0,
        api_client: kubernetes.client.ApiClient | None = None,
    ) -> None:
        """Configure; nothing is contacted until start().

        Args:
            namespace: the Service's namespace; empty means this pod's own
                namespace (from the service account), else "default".
            service: the headless Service whose endpoints are the nodes.
            port: the nodes' gRPC port when a slice has no port named "grpc".
            grace_seconds: how long a node that vanished from every slice stays
                a member (a pod restart is not a removal).
            api_client: the client to use; default: in-cluster config, else
                the kubeconfig.

        Raises:
            kubernetes.config.ConfigException: no api_client was given and
                neither configuration is available.
        """
        self._namespace = namespace or _own_namespace()
        self._service = service
        self._port = port
        self._owns_client = api_client is None
        self._api_client = api_client or _default_api_client()
        self._api = kubernetes.client.DiscoveryV1Api(self._api_client)
        self._members = GracefulMembers(grace_seconds)
        self._subscribers: Subscribers[[Members]] = Subscribers()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._synced: asyncio.Event | None = None
        self._expiry: asyncio.TimerHandle | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        # The open watch response, so stop() can shut its socket from the loop.
        self._response_lock = threading.Lock()
        self._response: Any = None

    @property
    def namespace(self) -> str:
        """The namespace being watched."""
        return self._namespace

    def members(self) -> Members:
        """The current node set (a copy)."""
        return self._members.members()

    def subscribe(self, callback: Callable[[Members], None]) -> Callable[[], None]:
        """Call callback on the event loop with the new set on every change."""
        return self._subscribers.add(callback)

    async def start(self) -> None:
        """Start watching; returns once the first list has succeeded.

        It keeps retrying while the API server is unreachable; wrap it in a
        timeout to give up.
        """
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._synced = asyncio.Event()
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"k8s-discovery-{self._service}", daemon=True
        )
        self._thread.start()
        await self._synced.wait()

    async def stop(self) -> None:
        """Stop watching, wait for the thread, and close the client if it is ours."""
        self._stopping.set()
        with self._response_lock:
            if self._response is not None:
                # Wakes the thread blocked reading the watch stream.
                self._response.shutdown()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        if self._synced is not None:
            self._synced.set()  # a start() still waiting for a first list returns
        if self._owns_client:
            self._api_client.close()

    # --- the background thread -------------------------------------------

    def _run(self) -> None:
        """List, then watch, forever: the thread's body."""
        slices: dict[str, dict[str, Any]] = {}
        version: str | None = None
        delay = BACKOFF_MIN
        gone_in_a_row = 0
        while not self._stopping.is_set():
            try:
                if version is None:
                    slices, version = self._list()
                    self._publish(slices)
                version = self._watch(slices, version)
                delay = BACKOFF_MIN
                gone_in_a_row = 0
            except _Gone:
                log.info("endpointslice watch expired, relisting", service=self._service)
                version = None
                gone_in_a_row += 1
                if gone_in_a_row > 1:
                    # Relist at once the first time; back off if 410s keep coming
                    # rather than hammering the API server with lists.
                    self._stopping.wait(delay)
                    delay = min(delay * 2, BACKOFF_MAX)
            except Exception as error:  # every API or connection failure: retry
                if self._stopping.is_set():
                    break
                log.warning(
                    "endpointslice watch failed, retrying",
                    service=self._service,
                    error=f"{type(error).__name__}: {error}",
                    retry_in=delay,
                )
                self._stopping.wait(delay)
                delay = min(delay * 2, BACKOFF_MAX)

    def _list(self) -> tuple[dict[str, dict[str, Any]], str]:
        """The current slices by name, and the list's resourceVersion."""
        # _preload_content=False: the raw urllib3 response, not the typed model
        response: Any = self._api.list_namespaced_endpoint_slice(
            self._namespace,
            label_selector=f"{SERVICE_LABEL}={self._service}",
            _preload_content=False,
            _request_timeout=(CONNECT_TIMEOUT, 30.0),
        )
        try:
            body = json.loads(response.data)
        finally:
            response.release_conn()
        slices = {item["metadata"]["name"]: item for item in body.get("items") or []}
        return slices, body["metadata"]["resourceVersion"]

    def _watch(self, slices: dict[str, dict[str, Any]], version: str) -> str:
        """Apply watch events from `version` on; returns the last version when it ends.

        Raises:
            _Gone: the server no longer has `version`.
        """
        try:
            response: Any = self._api.list_namespaced_endpoint_slice(
                self._namespace,
                label_selector=f"{SERVICE_LABEL}={self._service}",
                watch=True,
                resource_version=version,
                allow_watch_bookmarks=True,
                timeout_seconds=WATCH_SECONDS,
                _preload_content=False,
                _request_timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
            )
        except ApiException as error:
            if error.status == 410:
                raise _Gone from error
            raise
        with self._response_lock:
            if self._stopping.is_set():
                response.shutdown()
            self._response = response
        try:
            for line in iter_resp_lines(response):
                version = self._apply(slices, json.loads(line), version)
        finally:
            with self._response_lock:
                self._response = None
            response.release_conn()
        return version

    def _apply(self, slices: dict[str, dict[str, Any]], event: dict[str, Any], version: str) -> str:
        """Apply one watch event to `slices`; returns the new resourceVersion."""
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise _Gone(obj.get("message"))
            raise RuntimeError(f"watch error {obj.get('code')}: {obj.get('message')}")
        meta = obj.get("metadata") or {}
        new_version = meta.get("resourceVersion") or version
        if kind == "BOOKMARK":
            return new_version
        if kind == "DELETED":
            slices.pop(meta["name"], None)
        else:  # ADDED, MODIFIED
            slices[meta["name"]] = obj
        self._publish(slices)
        return new_version

    def _publish(self, slices: dict[str, dict[str, Any]]) -> None:
        """Hand the nodes present now to the event loop."""
        present = members_from_slices(slices.values(), self._port)
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(self._on_present, present)
        except RuntimeError:
            self._stopping.set()  # the loop is closed: nobody is listening any more

    # --- on the event loop ---------------------------------------------------

    def _on_present(self, present: Members) -> None:
        """Merge what the API server lists into the members; notify on change."""
        if self._stopping.is_set():
            return
        assert self._loop is not None and self._synced is not None
        changed = self._members.observe(present, self._loop.time())
        self._schedule_expiry()
        if not self._synced.is_set():
            log.info("endpointslices listed", service=self._service, members=self.members())
            self._synced.set()
        if changed:
            log.info("members changed", service=self._service, members=self.members())
            self._subscribers.notify(self.members())

    def _on_expiry(self) -> None:
        """A vanished node's grace period may be over."""
        assert self._loop is not None
        self._expiry = None
        if self._members.expire(self._loop.time()):
            log.info("members expired", service=self._service, members=self.members())
            self._subscribers.notify(self.members())
        self._schedule_expiry()

    def _schedule_expiry(self) -> None:
        assert self._loop is not None
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        deadline = self._members.next_expiry()
        if deadline is not None:
            self._expiry = self._loop.call_at(deadline, self._on_expiry)


def _own_namespace() -> str:
    """This pod's namespace from its service account, else "default"."""
    try:
        return NAMESPACE_FILE.read_text().strip() or "default"
    except OSError:
        return "default"


def _default_api_client() -> kubernetes.client.ApiClient:
    """A client from the in-cluster config, else from the kubeconfig."""
    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=configuration)
    except kubernetes.config.ConfigException:
        # KUBECONFIG is read now, not when the kubernetes package was imported.
        kubernetes.config.load_kube_config(
            config_file=os.environ.get("KUBECONFIG"), client_configuration=configuration
        )
    return kubernetes.client.ApiClient(configuration)
