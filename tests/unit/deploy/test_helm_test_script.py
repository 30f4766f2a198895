"""charts/parley/files/helm-test-chat.py, the `helm test` script, against a gateway double."""

from __future__ import annotations

import importlib.util
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from deploy_helpers import CHART
from websockets.asyncio.server import Server, ServerConnection, serve

SCRIPT = CHART / "files" / "helm-test-chat.py"


def load_script() -> Any:
    """The script as a module (its main() is what `python -c` runs)."""
    spec = importlib.util.spec_from_file_location("helm_test_chat", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class GatewayDouble:
    """Just enough of DESIGN §5 for one user in one room; optionally requires a JWT."""

    def __init__(self, secret: str = "", fail_sends: bool = False) -> None:
        self.secret = secret
        self.fail_sends = fail_sends
        self.users: list[str] = []
        self.server: Server | None = None

    @property
    def url(self) -> str:
        """ws://127.0.0.1:PORT/ws of the running double."""
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/ws"

    def user_of(self, path: str) -> str | None:
        """The user a handshake path authenticates, or None to refuse it."""
        query = parse_qs(urlsplit(path).query)
        if self.secret:
            try:
                claims = jwt.decode(query["token"][0], self.secret, algorithms=["HS256"])
            except (KeyError, jwt.InvalidTokenError):
                return None
            return str(claims["sub"])
        return query.get("user", [None])[0]

    async def handle(self, ws: ServerConnection) -> None:
        """Serve create/join/send for one connection."""
        user = self.user_of(ws.request.path if ws.request else "")
        if user is None:
            await ws.close(4401, "unauthorized")
            return
        self.users.append(user)
        seq = 0
        async for raw in ws:
            frame = json.loads(raw)
            kind, room, rid = frame["type"], frame.get("room"), frame.get("id")
            if kind == "create":
                await ws.send(
                    json.dumps({"type": "created", "room": room, "owner": user, "id": rid})
                )
            elif kind == "join":
                await ws.send(
                    json.dumps(
                        {
                            "type": "joined",
                            "room": room,
                            "last_seq": 0,
                            "members": [user],
                            "id": rid,
                        }
                    )
                )
            elif kind == "send" and self.fail_sends:
                await ws.send(
                    json.dumps(
                        {
                            "type": "error",
                            "id": rid,
                            "code": "unavailable",
                            "message": "no administrator",
                        }
                    )
                )
            elif kind == "send":
                seq += 1
                await ws.send(json.dumps({"type": "ack", "id": rid, "room": room, "seq": seq}))
                await ws.send(
                    json.dumps(
                        {
                            "type": "message",
                            "room": room,
                            "seq": seq,
                            "from": user,
                            "text": frame["text"],
                            "ts": "2026-01-01T00:00:00Z",
                        }
                    )
                )

    async def __aenter__(self) -> GatewayDouble:
        self.server = await serve(self.handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


@pytest.fixture
def script(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The loaded script, with auth off unless a test sets PARLEY_JWT_SECRET."""
    monkeypatch.delenv("PARLEY_JWT_SECRET", raising=False)
    return load_script()


async def test_succeeds_when_its_message_comes_back(script: Any) -> None:
    """Against a working gateway the script exits 0 as user helmtest."""
    async with GatewayDouble() as gateway:
        assert await script.main(gateway.url, 10) == 0
    assert gateway.users == ["helmtest"]


async def test_signs_a_token_when_auth_is_on(script: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """With PARLEY_JWT_SECRET set it connects with ?token= signed by that key."""
    monkeypatch.setenv("PARLEY_JWT_SECRET", "k" * 32)
    async with GatewayDouble(secret="k" * 32) as gateway:
        assert await script.main(gateway.url, 10) == 0
    assert gateway.users == ["helmtest"]


async def test_fails_when_messages_never_commit(script: Any) -> None:
    """A gateway that never accepts the message makes the script exit 1 at its deadline."""
    async with GatewayDouble(fail_sends=True) as gateway:
        assert await script.main(gateway.url, 1) == 1


async def test_fails_when_nothing_listens(script: Any) -> None:
    """No gateway at all: exit 1 once the deadline passes."""
    async with GatewayDouble() as gateway:
        url = gateway.url
    assert await script.main(url, 1) == 1
