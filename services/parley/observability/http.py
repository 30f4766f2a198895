"""The HTTP port of nodes and gateways: /metrics, /healthz, /readyz.

Served by the `websockets` server's plain-HTTP hook, so no extra web
framework is needed for three read-only endpoints.
"""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response


def _response(status: HTTPStatus, body: bytes, content_type: str) -> Response:
    headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return Response(status.value, status.phrase, headers, body)


async def serve_http(
    address: str, ready: Callable[[], bool], alive: Callable[[], bool] = lambda: True
) -> Server:
    """Start serving /metrics, /healthz and /readyz on `host:port`.

    Args:
        address: "host:port" to listen on; port 0 picks a free one.
        ready: true when the process should receive traffic (readiness).
        alive: true while the process works at all (liveness).

    Returns:
        The running server; close() it on shutdown.
    """
    host, _, port = address.rpartition(":")

    def route(_conn: ServerConnection, request: Request) -> Response:
        path = request.path.split("?", 1)[0]
        if path == "/metrics":
            return _response(HTTPStatus.OK, generate_latest(), CONTENT_TYPE_LATEST)
        if path in ("/healthz", "/livez"):
            ok = alive()
        elif path == "/readyz":
            ok = ready()
        else:
            return _response(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
        status = HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE
        return _response(status, b"ok\n" if ok else b"not ready\n", "text/plain")

    async def no_websocket(_conn: ServerConnection) -> None:
        return None

    return await serve(no_websocket, host or "127.0.0.1", int(port), process_request=route)
