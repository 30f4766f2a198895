"""The WebSocket handshake: path, user and token checks (DESIGN §5)."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from parley.gateway.app import Gateway
from support.client import ChatClient
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

SECRET = "s3cret-for-tests-only-32-bytes-long!"


async def _status(url: str) -> int:
    with pytest.raises(InvalidStatus) as info:
        async with connect(url, open_timeout=5):
            pass
    return info.value.response.status_code


@pytest.mark.parametrize(
    "query", ["", "?user=", "?user=Alice", "?user=a%20b", "?user=" + "a" * 33, "?user=%C3%A9",
              "?token=x", "?user=-a", "?" + "&".join(f"k{i}=v" for i in range(40))],
)  # fmt: skip
async def test_bad_or_missing_user_is_401(gateway: Gateway, query: str) -> None:
    """Without a valid ?user= the handshake is refused with HTTP 401."""
    assert await _status(gateway.url + query) == 401


async def test_wrong_path_is_404(gateway: Gateway) -> None:
    """Only /ws is a WebSocket endpoint."""
    base = gateway.url.removesuffix("/ws")
    assert await _status(base + "/chat?user=alice") == 404
    assert await _status(base + "/?user=alice") == 404


async def test_valid_user_connects(gateway: Gateway) -> None:
    """?user=NAME connects when auth is off."""
    async with await ChatClient.connect(gateway.url, "alice") as alice:
        assert (await alice.ping())["type"] == "pong"


def _token(claims: dict[str, Any], secret: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=algorithm)


async def test_jwt_auth(node: Any, start_gateway: Any) -> None:
    """With a secret, only an HS256 token with a valid `sub` is accepted."""
    gateway = await start_gateway({"node-0": node[1]}, jwt_secret=SECRET)
    url = gateway.url
    async with await ChatClient.connect(url, token=_token({"sub": "alice"})) as alice:
        assert (await alice.ping())["type"] == "pong"
    assert await _status(url + "?user=alice") == 401
    assert await _status(url + "?token=" + _token({"sub": "alice"}, secret="wrong" * 8)) == 401
    assert await _status(url + "?token=" + _token({"name": "alice"})) == 401
    assert await _status(url + "?token=" + _token({"sub": "Bad Name"})) == 401
    assert await _status(url + "?token=" + _token({"sub": 7})) == 401
    expired = _token({"sub": "alice", "exp": int(time.time()) - 60})
    assert await _status(url + "?token=" + expired) == 401
    assert await _status(url + "?token=not.a.jwt") == 401
