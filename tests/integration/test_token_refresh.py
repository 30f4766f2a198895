"""Tokens expire on real processes: the client refreshes from its token file
in-connection; a client that cannot refresh is told and closed with 4001,
and its reconnect with the stale token is refused."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import jwt
from parley.client.connection import Connection
from parley.client.events import Status
from parley.client.tokens import file_source
from support.client import ChatClient
from support.cluster import LocalCluster
from support.tokens import KeyRing
from support.wait import wait_for
from websockets.exceptions import InvalidStatus

SECRET = "s3cret-for-the-refresh-tests-0123456789"


def _token(user: str, lifetime: float) -> str:
    return jwt.encode({"sub": user, "exp": int(time.time() + lifetime)}, SECRET, algorithm="HS256")


async def _cluster(make_cluster: Callable[..., Awaitable[LocalCluster]]) -> LocalCluster:
    return await make_cluster(
        nodes=1, replicas=1, jwt_secret=SECRET, gateway_args=["--jwt-leeway", "0"]
    )


async def test_a_token_file_keeps_the_connection_alive(
    make_cluster: Callable[..., Awaitable[LocalCluster]], tmp_path: Path
) -> None:
    cluster = await _cluster(make_cluster)
    token_file = tmp_path / "token"
    first = _token("alice", 8)  # (room to spare on a loaded machine)
    token_file.write_text(first)
    first_exp = jwt.decode(first, options={"verify_signature": False})["exp"]
    async with Connection(
        cluster.gateway_url(0), "", token_source=file_source(str(token_file))
    ) as conn:
        await conn.create("r")
        await conn.join("r")
        token_file.write_text(_token("alice", 600))  # what a login helper would do
        await wait_for(lambda: conn.token_refreshes == 1, 15, message="the fresh token taken")
        await wait_for(lambda: time.time() > first_exp + 1.5, 10, message="past the old expiry")
        assert conn.connected and conn.reconnects == 0
        assert await conn.send("r", "still here") > 0


async def test_an_unrefreshed_token_is_closed_and_stays_out(
    make_cluster: Callable[..., Awaitable[LocalCluster]],
) -> None:
    cluster = await _cluster(make_cluster)
    async with Connection(cluster.gateway_url(0), "", _token("bob", 3)) as conn:
        events = conn.events()
        await conn.rooms()
        seen: list[Status] = []
        async for event in events:
            if isinstance(event, Status):
                seen.append(event)
                if event.state == "closed":
                    break
        assert any("token expired" in s.message for s in seen if s.state == "error")
        assert seen[-1].reason == "unauthorized"  # the stale token is refused on reconnect


async def test_jwks_keys_rotate_on_a_running_gateway(
    make_cluster: Callable[..., Awaitable[LocalCluster]], tmp_path: Path
) -> None:
    """RS256/EdDSA keys from a JWKS file: a key added to the file is taken and
    a key removed is refused, with no restart; HS256 is not accepted at all."""
    ring = KeyRing(tmp_path / "jwks.json")
    old = ring.add("RS256")
    cluster = await make_cluster(
        nodes=1, replicas=1, gateway_args=["--auth", "jwt", "--jwt-jwks", str(ring.path),
                                           "--jwt-audience", "parley"],
    )  # fmt: skip
    url = cluster.gateway_url(0)

    async def accepted(token: str) -> bool:
        try:
            async with await ChatClient.connect(url, token=token) as client:
                return (await client.ping())["type"] == "pong"
        except InvalidStatus as refused:
            assert refused.response.status_code == 401
            return False

    claims = {"sub": "gina", "aud": "parley"}
    assert await accepted(ring.token(old, claims))
    assert not await accepted(ring.token(old, {"sub": "gina", "aud": "other"}))
    assert not await accepted(jwt.encode(claims, "x" * 32, algorithm="HS256"))
    new = ring.add("EdDSA")
    ring.remove(old)
    await wait_for(lambda: accepted(ring.token(new, claims)), 10, message="the new key taken")
    gone = KeyRing(tmp_path / "unused.json")
    gone.add("RS256", kid=old)  # a token with the old kid, from a key no longer listed
    assert not await accepted(gone.token(old, claims))
