"""structlog setup: JSON lines in pods, a readable console at a terminal."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog


def configure(role: str, node_id: str = "", fmt: str = "auto", level: str = "info") -> None:
    """Configure structlog and stdlib logging for this process.

    Args:
        role: "node", "gateway" or "cli"; added to every line.
        node_id: the node or gateway id; added to every line when not empty.
        fmt: "json", "console", or "auto" (console when stderr is a terminal).
        level: the minimum level name.
    """
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    )
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(role=role, **({"node": node_id} if node_id else {}))
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr)


def get_logger(name: str = "parley") -> Any:
    """A structlog logger; call configure() once at start-up first."""
    return structlog.get_logger(name)
