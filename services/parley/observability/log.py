"""structlog setup: JSON lines in pods, a readable console at a terminal.

Every line carries ``timestamp`` (RFC 3339, UTC), ``level``, ``role`` and,
when given, ``node_id``; plus whatever the code bound: ``log.bind(room=...,
seq=...)`` or ``structlog.contextvars.bind_contextvars(room=...)`` for a whole
task. While a span is being traced, ``trace_id`` and ``span_id`` are added so
a log line leads to its trace. Records of the standard ``logging`` module
(grpc, websockets, asyncio) go through the same renderer, so a pod's output
is JSON lines only.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from structlog.typing import Processor

from parley.observability import tracing


def _identity(role: str, node_id: str) -> Processor:
    """A processor adding role and node id to every event.

    A processor, not contextvars, so lines logged from threads and from
    tasks created before configure() carry them too. The process's identity
    wins over a field of the same name passed to one call (say a room's
    ``role=...``), which is kept as ``event_role`` / ``event_node_id``, so
    filtering on ``role`` always finds a process's every line.
    """

    def add(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> Any:
        for key, value in (("role", role), ("node_id", node_id)):
            if not value:
                continue
            given = event.get(key)
            if given is not None and given != value:
                event[f"event_{key}"] = given
            event[key] = value
        return event

    return add


def _add_trace_ids(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> Any:
    """Add the current trace and span id while tracing is on."""
    if tracing.enabled():
        from opentelemetry import trace

        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            event["trace_id"] = f"{ctx.trace_id:032x}"
            event["span_id"] = f"{ctx.span_id:016x}"
    return event


def configure(role: str, node_id: str = "", fmt: str = "auto", level: str = "info") -> None:
    """Configure structlog and stdlib logging for this process.

    Args:
        role: "node", "gateway" or "cli"; added to every line as ``role``.
        node_id: the node or gateway id; added to every line as ``node_id``
            when not empty.
        fmt: "json", "console", or "auto" (console when stderr is a terminal).
        level: the minimum level name ("debug", "info", "warning", "error").
    """
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        _identity(role, node_id),
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        _add_trace_ids,
    ]
    renderer: Processor
    if use_json:
        shared += [structlog.processors.StackInfoRenderer(), structlog.processors.format_exc_info]
        renderer = structlog.processors.JSONRenderer()
    else:
        # ConsoleRenderer prints exc_info itself, prettily.
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.reset_defaults()
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )

    # Route stdlib logging (grpc, websockets, asyncio) through the same chain.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    # Libraries are chatty at info; let their warnings through (or debug when asked).
    root.setLevel(numeric if numeric <= logging.DEBUG else max(numeric, logging.WARNING))


def get_logger(name: str = "parley") -> Any:
    """A structlog logger; call configure() once at start-up first.

    Bind per-request fields with ``log.bind(room=room, seq=seq)``.
    """
    return structlog.get_logger(name)
