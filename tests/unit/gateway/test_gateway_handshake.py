"""The WebSocket handshake: path, user and token checks (DESIGN §5)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import jwt
import pytest
from parley.gateway.app import Gateway
from prometheus_client import REGISTRY
from support.client import ChatClient
from support.wait import wait_for
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


def _counter(name: str, reason: str) -> float:
    return REGISTRY.get_sample_value(name, {"reason": reason}) or 0.0


async def test_bearer_header_and_refusals_are_counted(node: Any, start_gateway: Any) -> None:
    """The token may come in an Authorization header; a refusal is a bare 401
    (no detail for a prober) counted by reason."""
    gateway = await start_gateway({"node-0": node[1]}, jwt_secret=SECRET)
    headers = {"Authorization": "Bearer " + _token({"sub": "alice"})}
    async with await ChatClient.connect(gateway.url, additional_headers=headers) as alice:
        assert (await alice.ping())["type"] == "pong"
    before = _counter("parley_auth_failures_total", "bad_signature")
    with pytest.raises(InvalidStatus) as info:
        async with connect(
            gateway.url + "?token=" + _token({"sub": "a"}, "w" * 32), open_timeout=5
        ):
            pass
    assert info.value.response.status_code == 401
    assert info.value.response.body == b"unauthorized\n"
    assert info.value.response.headers["WWW-Authenticate"].startswith("Bearer")
    assert _counter("parley_auth_failures_total", "bad_signature") == before + 1
    # every reason's series exists from start-up
    assert (
        REGISTRY.get_sample_value("parley_auth_failures_total", {"reason": "wrong_issuer"})
        is not None
    )
    assert (
        REGISTRY.get_sample_value("parley_ws_disconnects_total", {"reason": "token_expired"})
        is not None
    )


async def test_an_expiring_token_is_told_and_closed_with_4001(
    node: Any, start_gateway: Any
) -> None:
    gateway = await start_gateway({"node-0": node[1]}, jwt_secret=SECRET, jwt_leeway=0.0)
    before = _counter("parley_ws_disconnects_total", "token_expired")
    token = _token({"sub": "alice", "exp": int(time.time()) + 2})
    async with await ChatClient.connect(gateway.url, token=token) as alice:
        error = await alice.next_of("error", timeout=10)
        assert error["code"] == "unauthorized" and error["message"] == "token expired"
        await asyncio.wait_for(alice.closed.wait(), 10)
        assert alice.close_code == 4001
    await wait_for(
        lambda: _counter("parley_ws_disconnects_total", "token_expired") == before + 1, 10,
        message="the disconnect counted",
    )  # fmt: skip


async def test_a_refreshed_token_keeps_the_connection(node: Any, start_gateway: Any) -> None:
    """`auth` with a fresh token for the same user moves the expiry; a token
    for another user, or a bad one, is refused and changes nothing."""
    gateway = await start_gateway({"node-0": node[1]}, jwt_secret=SECRET, jwt_leeway=0.0)
    first_exp = int(time.time()) + 5
    async with await ChatClient.connect(
        gateway.url, token=_token({"sub": "alice", "exp": first_exp})
    ) as alice:
        other = await alice.request({"type": "auth", "token": _token({"sub": "bob"}), "id": "o"})
        assert (other["type"], other["code"]) == ("error", "unauthorized")
        bad = await alice.request({"type": "auth", "token": "x.y.z", "id": "b"})
        assert (bad["type"], bad["code"]) == ("error", "unauthorized")
        fresh_exp = int(time.time()) + 60
        ok = await alice.request(
            {"type": "auth", "token": _token({"sub": "alice", "exp": fresh_exp}), "id": "f"}
        )
        assert ok == {"type": "auth", "id": "f", "user": "alice", "expires": fresh_exp}
        await wait_for(lambda: time.time() > first_exp + 1, 10, message="past the first expiry")
        assert (await alice.ping())["type"] == "pong"
        assert not [f for f in alice.frames if f.get("message") == "token expired"]


async def test_auth_frame_with_auth_off_is_a_bad_request(gateway: Gateway) -> None:
    async with await ChatClient.connect(gateway.url, "alice") as alice:
        reply = await alice.request({"type": "auth", "token": "a.b.c", "id": "a"})
        assert reply["code"] == "bad_request"


async def test_connections_per_user_and_rooms_per_connection(node: Any, start_gateway: Any) -> None:
    gateway = await start_gateway(
        {"node-0": node[1]}, max_connections_per_user=2, max_rooms_per_connection=2
    )
    first = await ChatClient.connect(gateway.url, "alice")
    second = await ChatClient.connect(gateway.url, "alice")
    third = await ChatClient.connect(gateway.url, "alice")
    await asyncio.wait_for(third.closed.wait(), 10)
    assert third.close_code == 4008
    async with await ChatClient.connect(gateway.url, "bob") as bob:  # others are not affected
        assert (await bob.ping())["type"] == "pong"
    for room in ("r1", "r2", "r3"):
        await first.create(room)
    await first.join("r1")
    await first.join("r2")
    refused = await first.join("r3")
    assert refused["code"] == "limit_exceeded"
    await first.leave("r1")
    # the room is given up once this connection has had the leave entry
    await wait_for(
        lambda: any(f.get("event") == "leave" for f in first.deliveries.get("r1", [])), 10,
        message="the leave delivered",
    )  # fmt: skip
    assert (await first.join("r3"))["type"] == "joined"
    for client in (first, second, third):
        await client.close()
    # a slot frees when a connection closes
    async with await ChatClient.connect(gateway.url, "alice") as again:
        assert (await again.ping())["type"] == "pong"
