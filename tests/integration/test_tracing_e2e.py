"""A publish is one trace across real gateway and node processes (DESIGN §6)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from support.client import ChatClient
from support.cluster import LocalCluster
from support.wait import wait_for


@dataclasses.dataclass(frozen=True)
class Span:
    """The parts of an exported span the assertions need."""

    name: str
    service: str
    instance: str
    trace_id: str
    span_id: str
    parent_id: str


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    """A tiny OTLP/gRPC trace receiver that keeps every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[Span] = []

    async def Export(
        self,
        request: trace_service_pb2.ExportTraceServiceRequest,
        context: grpc.aio.ServicerContext,
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        """Record the spans of one export."""
        for resource_spans in request.resource_spans:
            attrs = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for s in scope_spans.spans:
                    self.spans.append(
                        Span(
                            name=s.name,
                            service=attrs.get("service.name", ""),
                            instance=attrs.get("service.instance.id", ""),
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_id=s.parent_span_id.hex(),
                        )
                    )
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, int]]:
    """An OTLP receiver on 127.0.0.1 and its port."""
    servicer = Receiver()
    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield servicer, port
    await server.stop(None)


def _ancestors(span: Span, by_id: dict[str, Span]) -> list[Span]:
    chain = []
    while span.parent_id and span.parent_id in by_id:
        span = by_id[span.parent_id]
        chain.append(span)
    return chain


def _publish_trace(spans: list[Span]) -> list[Span] | None:
    """The spans of the first trace that has the whole publish path, else None."""
    for root in (s for s in spans if s.name == "gateway.publish"):
        trace = [s for s in spans if s.trace_id == root.trace_id]
        names = {s.name for s in trace}
        if {"node.publish", "node.replicate", "peer.append"} <= names:
            return trace
    return None


def _summary(spans: list[Span]) -> str:
    """Each trace's spans as name@instance, for failure messages."""
    traces: dict[str, list[str]] = {}
    for s in spans:
        traces.setdefault(s.trace_id, []).append(f"{s.name}@{s.instance}")
    return "\n".join(" ".join(sorted(names)) for names in traces.values())


async def test_publish_is_one_trace_across_processes(
    receiver: tuple[Receiver, int], make_cluster: Callable[..., Awaitable[LocalCluster]]
) -> None:
    """gateway.publish → node.publish → node.replicate → peer.append, across three processes."""
    servicer, port = receiver
    cluster = await make_cluster(
        extra_env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
            "OTEL_BSP_SCHEDULE_DELAY": "100",  # ms: export promptly
            "OTEL_TRACES_SAMPLER": "always_on",
        }
    )
    async with await ChatClient.connect(cluster.gateway_url(), "alice") as alice:
        await alice.create("traced")
        await alice.join("traced")
        ack = await alice.send("traced", "hello, traces")
        assert ack["type"] == "ack", ack

    try:
        trace = await wait_for(lambda: _publish_trace(servicer.spans), timeout=20)
    except TimeoutError:
        pytest.fail(
            "no trace has gateway.publish, node.publish, node.replicate and peer.append;"
            f" traces received:\n{_summary(servicer.spans)}"
        )
    by_id = {s.span_id: s for s in trace}
    (root,) = [s for s in trace if s.name == "gateway.publish" and s.parent_id == ""]
    assert root.service == "parley-gateway"

    publishes = [s for s in trace if s.name == "node.publish"]
    assert publishes
    for publish in publishes:
        assert publish.service == "parley-node"
        assert root in _ancestors(publish, by_id), "node.publish is not under gateway.publish"
    administrator = publishes[0].instance
    assert administrator in cluster.node_ids

    replicates = [s for s in trace if s.name == "node.replicate"]
    for replicate in replicates:
        assert replicate.instance == administrator
        assert set(_ancestors(replicate, by_id)) & set(publishes), "replicate not under publish"

    appends = [s for s in trace if s.name == "peer.append"]
    followers = {s.instance for s in appends}
    assert followers and administrator not in followers
    assert followers <= set(cluster.node_ids)
    for append in appends:
        assert append.service == "parley-node"
        assert by_id[append.parent_id].name == "node.replicate"

    # Every span's parent is in the trace: no link was lost between processes.
    for span in trace:
        assert span is root or span.parent_id in by_id, span
