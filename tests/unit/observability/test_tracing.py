"""Tracing helpers: parent links across a real gRPC call, and nothing when off."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import grpc
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from parley._generated import peer_service_pb2, peer_service_pb2_grpc
from parley.observability import tracing


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    """Tracing on, exporting to memory, for one test."""
    memory = InMemorySpanExporter()
    tracing.configure_for_tests(memory, service_name="parley-test", node_id="node-0")
    yield memory
    tracing.shutdown()


class _Follower(peer_service_pb2_grpc.PeerServiceServicer):
    """A follower that opens a span parented by the caller's metadata."""

    async def Append(
        self, request: peer_service_pb2.AppendRequest, context: grpc.aio.ServicerContext
    ) -> peer_service_pb2.AppendResponse:
        with tracing.span_from_metadata(
            "peer.append", context.invocation_metadata(), sender=request.sender
        ):
            with tracing.span("peer.persist"):
                pass
            return peer_service_pb2.AppendResponse()


@pytest.fixture
async def stub() -> AsyncIterator[peer_service_pb2_grpc.PeerServiceStub]:
    """A PeerService stub connected to an in-test server on loopback."""
    server = grpc.aio.server()
    peer_service_pb2_grpc.add_PeerServiceServicer_to_server(_Follower(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield peer_service_pb2_grpc.PeerServiceStub(channel)
    await server.stop(None)


def _by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    return {s.name: s for s in spans}


def _parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


async def test_spans_link_across_grpc(
    exporter: InMemorySpanExporter, stub: peer_service_pb2_grpc.PeerServiceStub
) -> None:
    """A server span is the child of the client span whose metadata the call carried."""
    with tracing.span("gateway.publish", room="general"), tracing.span("node.replicate"):
        await stub.Append(
            peer_service_pb2.AppendRequest(sender="node-0"), metadata=tracing.inject_metadata()
        )
    spans = _by_name(exporter.get_finished_spans())
    assert set(spans) == {"gateway.publish", "node.replicate", "peer.append", "peer.persist"}
    root, replicate = spans["gateway.publish"], spans["node.replicate"]
    append, persist = spans["peer.append"], spans["peer.persist"]
    assert root.parent is None
    assert {s.context.trace_id for s in spans.values()} == {root.context.trace_id}
    assert _parent_id(replicate) == root.context.span_id
    assert _parent_id(append) == replicate.context.span_id
    assert append.parent is not None and append.parent.is_remote
    assert append.kind is SpanKind.SERVER
    assert _parent_id(persist) == append.context.span_id
    assert root.attributes == {"parley.room": "general"}
    assert append.attributes == {"parley.sender": "node-0"}
    assert root.resource.attributes["service.name"] == "parley-test"
    assert root.resource.attributes["service.instance.id"] == "node-0"


async def test_server_span_without_metadata_starts_a_trace(
    exporter: InMemorySpanExporter, stub: peer_service_pb2_grpc.PeerServiceStub
) -> None:
    """A call without traceparent gives the server span no parent."""
    await stub.Append(peer_service_pb2.AppendRequest(sender="node-1"))
    spans = _by_name(exporter.get_finished_spans())
    assert spans["peer.append"].parent is None


def test_carrier_parents_a_later_span(exporter: InMemorySpanExporter) -> None:
    """A span made from a stored carrier is the child of the span that stored it."""
    with tracing.span("node.publish"):
        first = tracing.current_carrier()
    with tracing.span("node.publish"):
        second = tracing.current_carrier()
    assert "traceparent" in first
    with tracing.span_from_carrier("node.replicate", first, links=[second, {}], follower="n2"):
        metadata = dict(tracing.inject_metadata())
    publish_a, publish_b, replicate = exporter.get_finished_spans()
    assert _parent_id(replicate) == publish_a.context.span_id
    assert replicate.context.trace_id == publish_a.context.trace_id
    assert [link.context.span_id for link in replicate.links] == [publish_b.context.span_id]
    assert replicate.attributes == {"parley.follower": "n2"}
    assert f"{replicate.context.span_id:016x}" in metadata["traceparent"]


def test_batch_span_parents_on_first_traced_item(exporter: InMemorySpanExporter) -> None:
    """span_for_batch: parent is the first non-empty carrier, the rest are links."""
    carriers: list[dict[str, str]] = [{}]
    for _ in range(3):
        with tracing.span("node.publish"):
            carriers.append(tracing.current_carrier())
    with tracing.span_for_batch("node.replicate", carriers, peer="node-1"):
        pass
    with tracing.span_for_batch("node.replicate", [{}, {}]) as heartbeat:
        assert heartbeat is tracing.NOOP_SPAN
    a, b, c, replicate = exporter.get_finished_spans()
    assert _parent_id(replicate) == a.context.span_id
    assert [link.context.span_id for link in replicate.links] == [
        b.context.span_id,
        c.context.span_id,
    ]


def test_empty_carrier_records_nothing(exporter: InMemorySpanExporter) -> None:
    """Work no traced request asked for (an empty carrier, no links) makes no span."""
    with tracing.span_from_carrier("node.replicate", {}, links=[{}]) as s:
        assert s is tracing.NOOP_SPAN
    assert exporter.get_finished_spans() == ()


def test_extract_context_reads_pairs_and_dicts(exporter: InMemorySpanExporter) -> None:
    """extract_context accepts gRPC metadata pairs, bytes values and dicts alike."""
    with tracing.span("gateway.publish"):
        pairs = (("other", "x"), *tracing.inject_metadata())
        carrier = tracing.current_carrier()
    for given in (pairs, carrier, [(k, v.encode()) for k, v in pairs]):
        with tracing.span_from_metadata("node.publish", given):
            pass
    root, *children = exporter.get_finished_spans()
    assert [_parent_id(c) for c in children] == [root.context.span_id] * 3


def test_exception_marks_span_as_error(exporter: InMemorySpanExporter) -> None:
    """An exception leaving a span is recorded on it."""
    with pytest.raises(ValueError), tracing.span("node.publish"):
        raise ValueError("boom")
    (failed,) = exporter.get_finished_spans()
    assert not failed.status.is_ok
    assert failed.events[0].name == "exception"


async def test_off_creates_nothing(stub: peer_service_pb2_grpc.PeerServiceStub) -> None:
    """With tracing off every helper returns shared no-ops and sends no metadata."""
    memory = InMemorySpanExporter()
    tracing.configure_for_tests(memory)
    tracing.shutdown()
    assert not tracing.enabled()
    assert tracing.span("x", a=1) is tracing.NOOP_SPAN
    assert tracing.span_from_metadata("x", (("traceparent", "bogus"),)) is tracing.NOOP_SPAN
    assert tracing.span_from_carrier("x", {"traceparent": "bogus"}) is tracing.NOOP_SPAN
    assert tracing.span_for_batch("x", [{"traceparent": "bogus"}]) is tracing.NOOP_SPAN
    assert tracing.inject_metadata() == ()
    assert tracing.current_carrier() == {}
    assert tracing.extract_context((("traceparent", "bogus"),)) is None
    with tracing.span("gateway.publish") as s:
        s.set_attribute("k", "v")
        s.add_event("e")
        await stub.Append(peer_service_pb2.AppendRequest(), metadata=tracing.inject_metadata())
    assert memory.get_finished_spans() == ()


def test_configure_without_endpoint_stays_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """configure() without an OTLP endpoint or console exporter leaves tracing off."""
    for name in (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_TRACES_EXPORTER",
        "OTEL_SDK_DISABLED",
    ):
        monkeypatch.delenv(name, raising=False)
    tracing.configure("parley-node", "node-0")
    assert not tracing.enabled()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    tracing.configure("parley-node", "node-0")
    assert not tracing.enabled()


def test_configure_with_endpoint_turns_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """configure() with an OTLP endpoint turns tracing on; shutdown() turns it off."""
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    # Nothing listens there; no span is made, so nothing is ever sent.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    try:
        tracing.configure("parley-node", "node-0")
        assert tracing.enabled()
    finally:
        tracing.shutdown()
    assert not tracing.enabled()
