"""OpenTelemetry tracing: one trace per publish, off (and free) unless configured.

A publish is one trace across processes (DESIGN §6)::

    gateway.publish            gateway: span(...) around the RoomService call,
    │                          metadata=inject_metadata() on that call
    └─ node.publish            administrator: span_from_metadata(name,
       │                       context.invocation_metadata()); it stores
       │                       current_carrier() with each pending entry
       └─ node.replicate       administrator, once per follower Append:
          │                    span_for_batch(name, carriers_of_the_entries)
          │                    (parent: the first carrier, links: the rest),
          │                    and the Append call gets
          │                    metadata=inject_metadata()
          └─ peer.append       follower: span_from_metadata(name,
                               context.invocation_metadata())

Replication is batched: one ``Append`` carries entries of many publishes,
possibly of many traces. The replicator runs in its own task, outside any
publish's context, so each pending entry keeps the W3C carrier of the publish
that made it (``current_carrier()``, a small dict, empty when tracing is off);
the batch's ``node.replicate`` span is a child of the first entry's publish
and *links* to the others, and the follower's ``peer.append`` is its child.
A batch with no traced entry (a heartbeat) gets the no-op span, so it makes
no trace of its own. The gateway batching publishes into ``PublishBatch``
does the same: each ``gateway.publish`` keeps its carrier, the batch call
runs under ``span_for_batch("gateway.publish_batch", carriers)``.

Tracing is on only when ``configure()`` finds ``OTEL_EXPORTER_OTLP_ENDPOINT``
(or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) set, or
``OTEL_TRACES_EXPORTER=console`` (spans printed to stdout, for debugging).
Everything else the SDK reads from the standard ``OTEL_*`` variables
(sampler, batch delays, headers, resource attributes). When off, every
helper checks one module-level boolean and returns a shared no-op object:
nothing is allocated per call on the hot path.

Keyword attributes become span attributes prefixed ``parley.``
(``span("node.publish", room="general")`` sets ``parley.room``); ``None``
values are skipped.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = [
    "NOOP_SPAN",
    "configure",
    "configure_for_tests",
    "current_carrier",
    "enabled",
    "extract_context",
    "inject_metadata",
    "shutdown",
    "span",
    "span_for_batch",
    "span_from_carrier",
    "span_from_metadata",
    "span_from_traceparent",
    "traceparent",
]

_enabled = False
"""True once configure() installed an exporter; every helper checks this first."""
_tracer: trace.Tracer | None = None
_provider: TracerProvider | None = None
_propagator = TraceContextTextMapPropagator()
_EMPTY_METADATA: tuple[tuple[str, str], ...] = ()


class _NoopSpan(AbstractContextManager["_NoopSpan"]):
    """A reusable context manager standing in for a span when tracing is off.

    It also answers the few Span methods callers use, so code can write
    ``with span(...) as s: s.set_attribute(...)`` whether tracing is on or not.
    """

    __slots__ = ()

    def __enter__(self) -> _NoopSpan:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def set_attribute(self, key: str, value: Any) -> None:
        """Do nothing."""

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        """Do nothing."""

    def add_event(self, name: str, attributes: Mapping[str, Any] | None = None) -> None:
        """Do nothing."""

    def record_exception(self, exception: BaseException, **_: Any) -> None:
        """Do nothing."""

    def is_recording(self) -> bool:
        """Never recording."""
        return False


NOOP_SPAN = _NoopSpan()
"""The shared no-op span every helper returns while tracing is off."""


class _MetadataGetter:
    """Reads keys from gRPC metadata: pairs, ``grpc.aio.Metadata`` or a dict."""

    def get(self, carrier: Any, key: str) -> list[str] | None:
        """Values of `key` (gRPC metadata keys are lower case)."""
        if isinstance(carrier, Mapping):
            value = carrier.get(key)
            return None if value is None else [value]
        values = [v for k, v in carrier if k == key]
        return [v if isinstance(v, str) else v.decode() for v in values] or None

    def keys(self, carrier: Any) -> list[str]:
        """Every key present."""
        if isinstance(carrier, Mapping):
            return list(carrier)
        return [k for k, _ in carrier]


_GETTER = _MetadataGetter()


def enabled() -> bool:
    """True when spans are being recorded and exported."""
    return _enabled


def _install(processor: SpanProcessor, service_name: str, node_id: str) -> None:
    global _enabled, _tracer, _provider
    shutdown()
    attributes: dict[str, str] = {"service.name": service_name}
    if node_id:
        attributes["service.instance.id"] = node_id
    provider = TracerProvider(resource=Resource.create(attributes), shutdown_on_exit=True)
    provider.add_span_processor(processor)
    _provider = provider
    _tracer = provider.get_tracer("parley")
    _enabled = True


def configure(service_name: str, node_id: str) -> None:
    """Turn tracing on for this process when the environment asks for it.

    On when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) is
    set — spans go through a BatchSpanProcessor to the OTLP gRPC exporter,
    which reads its endpoint, headers and TLS settings from the environment
    (``http://host:4317`` means plaintext) — or when
    ``OTEL_TRACES_EXPORTER=console``. ``OTEL_SDK_DISABLED=true`` or
    ``OTEL_TRACES_EXPORTER=none`` keep it off. Call once at start-up, after
    logging is configured; call ``shutdown()`` on exit to flush.

    Args:
        service_name: ``parley-node`` or ``parley-gateway`` (``service.name``).
        node_id: the process's id (``service.instance.id``), e.g. ``node-0``.
    """
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return
    exporter_name = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower()
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    processor: SpanProcessor
    if exporter_name == "console":
        processor = SimpleSpanProcessor(ConsoleSpanExporter(service_name=service_name))
    elif exporter_name == "otlp" and endpoint:
        # Imported here: the exporter pulls in grpc channel set-up code that a
        # process with tracing off never needs.
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        processor = BatchSpanProcessor(OTLPSpanExporter())
    else:
        return
    _install(processor, service_name, node_id)
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        # Let third-party instrumentation find ours too (settable only once).
        trace.set_tracer_provider(_provider)  # type: ignore[arg-type]


def configure_for_tests(
    exporter: SpanExporter, service_name: str = "parley-test", node_id: str = ""
) -> None:
    """Turn tracing on with `exporter`, exporting each span as it ends.

    For tests: pass an ``InMemorySpanExporter`` and read its finished spans.
    ``shutdown()`` turns tracing off again.
    """
    _install(SimpleSpanProcessor(exporter), service_name, node_id)


def shutdown() -> None:
    """Flush pending spans and turn tracing off; safe to call when off."""
    global _enabled, _tracer, _provider
    provider = _provider
    _enabled = False
    _tracer = None
    _provider = None
    if provider is not None:
        provider.shutdown()


def _attributes(attrs: Mapping[str, Any]) -> dict[str, Any]:
    return {f"parley.{k}": v for k, v in attrs.items() if v is not None}


def span(name: str, **attrs: Any) -> AbstractContextManager[Any]:
    """A span that is a child of the current span (a new trace if none).

    Use as ``with span("gateway.publish", room=room):``; it becomes the
    current span inside the block (also across ``await``), records an
    exception that escapes it and marks the span as an error.
    """
    if not _enabled:
        return NOOP_SPAN
    assert _tracer is not None
    return _tracer.start_as_current_span(name, attributes=_attributes(attrs))


def inject_metadata() -> tuple[tuple[str, str], ...]:
    """gRPC metadata carrying the current span (``traceparent``); ``()`` when off.

    Pass as ``metadata=`` on the outgoing call (add your own pairs to it).
    """
    if not _enabled:
        return _EMPTY_METADATA
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return tuple(carrier.items())


def extract_context(metadata: Any) -> Context | None:
    """The remote parent context found in gRPC invocation metadata.

    Args:
        metadata: ``context.invocation_metadata()`` of a server call (pairs,
            ``grpc.aio.Metadata``), a dict carrier, or None.

    Returns:
        The context to parent spans on; None when tracing is off or there is
        no metadata (a span then starts a new trace).
    """
    if not _enabled or metadata is None:
        return None
    return _propagator.extract(metadata, getter=_GETTER)  # type: ignore[arg-type]


def span_from_metadata(name: str, metadata: Any, **attrs: Any) -> AbstractContextManager[Any]:
    """A server span whose parent is the caller's span from gRPC metadata.

    Use in a servicer as
    ``with span_from_metadata("node.publish", context.invocation_metadata()):``.
    Without a ``traceparent`` it starts a new trace.
    """
    if not _enabled:
        return NOOP_SPAN
    assert _tracer is not None
    return _tracer.start_as_current_span(
        name,
        context=extract_context(metadata),
        kind=SpanKind.SERVER,
        attributes=_attributes(attrs),
    )


def current_carrier() -> dict[str, str]:
    """The current span as a W3C carrier dict, to store with batched work.

    Returns a new empty dict when tracing is off or no span is current.
    """
    if not _enabled:
        return {}
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier


def _links(carriers: Iterable[Mapping[str, str]]) -> Iterator[Link]:
    for carrier in carriers:
        if not carrier:
            continue
        ctx = trace.get_current_span(_propagator.extract(carrier)).get_span_context()
        if ctx.is_valid:
            yield Link(ctx)


def span_from_carrier(
    name: str,
    carrier: Mapping[str, str] | None,
    *,
    links: Iterable[Mapping[str, str]] = (),
    **attrs: Any,
) -> AbstractContextManager[Any]:
    """A span whose parent is the span saved in `carrier` by current_carrier().

    Args:
        name: the span name, e.g. ``node.replicate``.
        carrier: the parent's carrier; empty or None with links starts a
            new trace linked to them.
        links: carriers of other spans this one also serves (the rest of a
            batch); each valid one becomes a span link.
        **attrs: attributes, prefixed ``parley.``.

    Returns:
        The span's context manager; the no-op one when tracing is off or
        when neither `carrier` nor `links` carries a span, so heartbeats and
        work no traced request asked for stay out of traces.
    """
    if not _enabled:
        return NOOP_SPAN
    assert _tracer is not None
    linked = list(_links(links))
    if not carrier and not linked:
        return NOOP_SPAN
    parent = _propagator.extract(carrier) if carrier else Context()
    return _tracer.start_as_current_span(
        name, context=parent, links=linked, attributes=_attributes(attrs)
    )


def span_for_batch(
    name: str, carriers: Iterable[Mapping[str, str] | None], **attrs: Any
) -> AbstractContextManager[Any]:
    """A span for one batch serving many traced requests (e.g. ``node.replicate``).

    Its parent is the first non-empty carrier; every later non-empty one
    becomes a link. With no non-empty carrier (a heartbeat, or tracing off)
    it is the shared no-op span, so untraced batches cost nothing.

    Args:
        name: the span name.
        carriers: the current_carrier() stored with each item of the batch.
        **attrs: attributes, prefixed ``parley.``.
    """
    if not _enabled:
        return NOOP_SPAN
    present = [c for c in carriers if c]
    if not present:
        return NOOP_SPAN
    return span_from_carrier(name, present[0], links=present[1:], **attrs)


def traceparent() -> str:
    """The current span's W3C traceparent ("" when off), for a request field
    on a long-lived stream, whose call metadata is the stream's."""
    return current_carrier().get("traceparent", "")


def span_from_traceparent(name: str, parent: str, **attrs: Any) -> AbstractContextManager[Any]:
    """A server span under the sender's span named by a request's
    `traceparent` field (a new trace when it is empty)."""
    return span_from_carrier(name, {"traceparent": parent} if parent else None, **attrs)
