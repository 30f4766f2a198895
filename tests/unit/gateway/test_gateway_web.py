"""The web client's HTTP answers and the WebSocket Origin rule, without sockets."""

from __future__ import annotations

import json

from parley.gateway.web import WebClient, load_static
from websockets.datastructures import Headers
from websockets.http11 import Request


def request(path: str, **headers: str) -> Request:
    h = Headers()
    for key, value in headers.items():
        h[key.replace("_", "-")] = value
    return Request(path, h)


def test_every_page_has_the_strict_headers() -> None:
    web = WebClient(auth=False)
    for path in ("/", "/static/app.js", "/static/connection.js", "/static/style.css"):
        response = web.respond(request(path, Host="127.0.0.1:8080"))
        assert response is not None and response.status_code == 200, path
        policy = response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy and "script-src 'self'" in policy
        assert "connect-src 'self' ws://127.0.0.1:8080 wss://127.0.0.1:8080" in policy
        assert "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"
    assert web.respond(request("/ws")) is None  # the socket is not a page
    assert web.respond(request("/static/../config.py")) is None
    assert web.respond(request("/nope")) is None


def test_a_forged_host_is_not_echoed_into_the_policy() -> None:
    response = WebClient(auth=False).respond(request("/", Host="x; script-src *"))
    assert response is not None
    assert "script-src *" not in response.headers["Content-Security-Policy"]


def test_the_page_learns_whether_auth_is_on() -> None:
    for auth in (False, True):
        response = WebClient(auth=auth).respond(request("/config.json", Host="h"))
        assert response is not None and json.loads(response.body) == {"auth": auth}


def test_only_the_pages_own_origin_by_default() -> None:
    web = WebClient(auth=False)
    host = "127.0.0.1:8080"
    assert web.origin_allowed(request("/ws", Host=host))  # wscat: no Origin
    assert web.origin_allowed(request("/ws", Host=host, Origin=f"http://{host}"))
    assert web.origin_allowed(request("/ws", Host=host, Origin=f"https://{host}"))
    assert not web.origin_allowed(request("/ws", Host=host, Origin="http://evil.example"))
    assert not web.origin_allowed(request("/ws", Host=host, Origin="http://127.0.0.1:9999"))
    assert not web.origin_allowed(request("/ws", Host="a b", Origin="http://a b"))


def test_an_allow_list_adds_origins() -> None:
    web = WebClient(auth=False, allowed_origins=["https://chat.example.com/"])
    allowed = request("/ws", Host="gw:8080", Origin="https://chat.example.com")
    assert web.origin_allowed(allowed)
    assert not web.origin_allowed(request("/ws", Host="gw:8080", Origin="https://other.example"))
    anyone = WebClient(auth=False, allowed_origins=["*"])
    assert anyone.origin_allowed(request("/ws", Host="gw", Origin="https://other.example"))


def test_the_client_is_self_contained() -> None:
    """Nothing in the page loads from elsewhere, and user text is never parsed as HTML."""
    files = load_static()
    for path, found in files.items():
        text = found.body.decode()
        assert "https://" not in text and "//cdn" not in text, path
        for risky in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert risky not in text, (path, risky)
    assert "<script>" not in files["/"].body.decode()  # no inline script
