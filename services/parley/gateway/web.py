"""The web client, served by every gateway on its WebSocket port.

Plain files from the package (`parley/web/static`), read once at start-up:
no CDN, no build step. Every page goes out with a strict Content-Security-
Policy (scripts and styles only from this origin, no inline code, sockets
only back to this host), `nosniff`, no referrer and no framing.

The WebSocket handshake checks `Origin`: a browser page from another site
must not drive a signed-in user's socket. Without an allow-list only the
origin the page itself comes from is accepted; a handshake without `Origin`
(wscat, the terminal client) is not a browser's and is let through.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

STATIC_DIR = Path(__file__).resolve().parent.parent / "web" / "static"

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# a Host header as browsers send it: name or [v6] literal, optional port
_HOST = re.compile(r"^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$")


@dataclass(frozen=True, slots=True)
class _File:
    body: bytes
    content_type: str


def load_static(directory: Path = STATIC_DIR) -> dict[str, _File]:
    """Every file of the web client, by the path it is served at."""
    files: dict[str, _File] = {}
    for path in sorted(directory.iterdir()):
        content_type = _TYPES.get(path.suffix)
        if path.is_file() and content_type is not None:
            files[f"/static/{path.name}"] = _File(path.read_bytes(), content_type)
    files["/"] = files["/static/index.html"]
    return files


class WebClient:
    """Answers the page's HTTP requests and judges WebSocket origins.

    Args:
        auth: True when the gateway asks for tokens (the page shows a token field).
        allowed_origins: origins a WebSocket handshake may come from besides
            the page's own (`*` for any); empty: only the page's own.
    """

    def __init__(self, auth: bool, allowed_origins: list[str] | None = None) -> None:
        self._files = load_static()
        self._config = json.dumps({"auth": auth}).encode()
        self._allowed = {o.rstrip("/") for o in allowed_origins or [] if o}

    def respond(self, request: Request) -> Response | None:
        """The answer to a plain HTTP GET for the page, or None (not ours)."""
        path = request.path.partition("?")[0]
        if path == "/config.json":
            return self._response(HTTPStatus.OK, self._config, "application/json", request)
        found = self._files.get(path)
        if found is None:
            return None
        return self._response(HTTPStatus.OK, found.body, found.content_type, request)

    def origin_allowed(self, request: Request) -> bool:
        """True when the handshake's Origin may open a socket here."""
        origin = request.headers.get("Origin")
        if origin is None:
            return True  # not a browser: nothing to protect against
        origin = origin.rstrip("/")
        if "*" in self._allowed or origin in self._allowed:
            return True
        host = request.headers.get("Host", "")
        return bool(_HOST.match(host)) and origin in (f"http://{host}", f"https://{host}")

    def _response(
        self, status: HTTPStatus, body: bytes, content_type: str, request: Request
    ) -> Response:
        headers = Headers()
        headers["Content-Type"] = content_type
        headers["Content-Length"] = str(len(body))
        headers["Cache-Control"] = "no-cache"
        headers["Content-Security-Policy"] = _policy(request.headers.get("Host", ""))
        headers["X-Content-Type-Options"] = "nosniff"
        headers["Referrer-Policy"] = "no-referrer"
        headers["X-Frame-Options"] = "DENY"
        headers["Cross-Origin-Opener-Policy"] = "same-origin"
        return Response(status.value, status.phrase, headers, body)


def _policy(host: str) -> str:
    # 'self' covers ws/wss of this origin in current browsers; naming the host
    # too keeps older ones working, and only a well-formed Host is echoed
    sockets = f" ws://{host} wss://{host}" if _HOST.match(host) else ""
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        f"connect-src 'self'{sockets}; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    )
