"""Who is connecting: `?user=NAME` with auth off, `?token=JWT` (HS256, `sub`) with auth on."""

from __future__ import annotations

from http import HTTPStatus
from urllib.parse import parse_qs

import jwt

from parley.protocol.requests import is_valid_user

WS_PATH = "/ws"


class HandshakeRefused(Exception):
    """The WebSocket handshake is answered with this HTTP status instead."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def authenticate(target: str, jwt_secret: str) -> str:
    """The user name a handshake request is for.

    Args:
        target: the request target, path and query (`/ws?user=alice`).
        jwt_secret: the HS256 secret; empty turns auth off.

    Returns:
        A valid user name.

    Raises:
        HandshakeRefused: 404 for another path, 401 for a missing or bad user
            or token.
    """
    path, _, query = target.partition("?")
    if path != WS_PATH:
        raise HandshakeRefused(HTTPStatus.NOT_FOUND, f"no WebSocket endpoint here; use {WS_PATH}")
    try:
        params = parse_qs(query, max_num_fields=16)
    except ValueError:
        raise HandshakeRefused(HTTPStatus.UNAUTHORIZED, "too many query parameters") from None
    if jwt_secret:
        token = params.get("token", [""])[0]
        if not token:
            raise HandshakeRefused(HTTPStatus.UNAUTHORIZED, "missing ?token=JWT")
        try:
            claims = jwt.decode(
                token, jwt_secret, algorithms=["HS256"], options={"require": ["sub"]}
            )
        except jwt.InvalidTokenError as error:
            raise HandshakeRefused(HTTPStatus.UNAUTHORIZED, f"invalid token: {error}") from None
        user = claims.get("sub")
    else:
        user = params.get("user", [""])[0]
    if not is_valid_user(user):
        raise HandshakeRefused(
            HTTPStatus.UNAUTHORIZED,
            "user must match ^[a-z0-9][a-z0-9_-]{0,31}$",
        )
    return user  # type: ignore[return-value]
