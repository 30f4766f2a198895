"""Who is connecting: a JWT (HS256 secret or JWKS public keys), or `?user=` with auth off.

The token comes as `Authorization: Bearer JWT` or `?token=JWT`. Every refusal
has a reason (a metric label) and a detail (logged, never sent: a refused
handshake gets a bare 401 that tells an attacker nothing).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

import jwt

from parley.observability.log import get_logger
from parley.observability.metrics import AUTH_FAILURES
from parley.protocol.requests import is_valid_user
from parley.security.watched import WatchedFile

log = get_logger(__name__)

WS_PATH = "/ws"

SECRET_ALGORITHMS = frozenset({"HS256"})
"""Signed with the shared secret."""
KEY_ALGORITHMS = frozenset({"RS256", "ES256", "EdDSA"})
"""Signed with a private key whose public half is in the JWKS file."""

FAILURE_REASONS = (
    "missing_token",
    "malformed",
    "bad_algorithm",
    "unknown_key",
    "bad_signature",
    "expired",
    "not_yet_valid",
    "wrong_issuer",
    "wrong_audience",
    "bad_user",
    "other_user",
)
"""Every `reason` label of parley_auth_failures_total."""
for _reason in FAILURE_REASONS:
    AUTH_FAILURES.labels(reason=_reason)  # every series from start-up, at 0


class HandshakeRefused(Exception):
    """The WebSocket handshake is answered with this HTTP status instead."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class AuthFailed(Exception):
    """A token (or a user name, with auth off) is refused.

    Attributes:
        reason: one of FAILURE_REASONS.
        detail: what exactly was wrong, for the log only.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated user; `expires` is the token's `exp` (unix seconds), None without one."""

    user: str
    expires: float | None = None


def _failure(error: jwt.InvalidTokenError) -> AuthFailed:
    """The reason PyJWT's refusal stands for."""
    reasons: list[tuple[type[Exception], str]] = [
        (jwt.ExpiredSignatureError, "expired"),
        (jwt.ImmatureSignatureError, "not_yet_valid"),
        (jwt.InvalidIssuerError, "wrong_issuer"),
        (jwt.InvalidAudienceError, "wrong_audience"),
        (jwt.InvalidSignatureError, "bad_signature"),
        (jwt.InvalidAlgorithmError, "bad_algorithm"),
        (jwt.InvalidKeyError, "bad_algorithm"),
    ]
    for kind, reason in reasons:
        if isinstance(error, kind):
            return AuthFailed(reason, str(error))
    return AuthFailed("malformed", str(error))


def parse_jwks(contents: bytes) -> dict[str, jwt.PyJWK]:
    """The public keys of a JWKS document, by kid.

    Raises:
        ValueError: not a JWKS, no keys, or a key of an algorithm not accepted.
    """
    document = json.loads(contents)
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWKS document (an object with a 'keys' list)")
    keys: dict[str, jwt.PyJWK] = {}
    for index, data in enumerate(document["keys"]):
        try:
            key = jwt.PyJWK(data)
        except (jwt.PyJWKError, jwt.InvalidKeyError) as error:
            raise ValueError(f"JWKS key {index}: {error}") from None
        if key.algorithm_name not in KEY_ALGORITHMS:
            raise ValueError(f"JWKS key {index}: {key.algorithm_name} is not accepted")
        keys[str(data.get("kid", index))] = key
    if not keys:
        raise ValueError("the JWKS has no keys")
    return keys


def parse_secret(contents: bytes) -> str:
    """An HS256 key from a file (a mounted Secret), without its trailing newline."""
    secret = contents.decode().strip()
    if not secret:
        raise ValueError("the secret file is empty")
    return secret


class KeySet:
    """The public keys of a JWKS file, read again when the file changes."""

    def __init__(self, path: str) -> None:
        """Read the file now (a bad file stops the gateway at start-up).

        Raises:
            OSError, ValueError: the file cannot be read or is not a JWKS.
        """
        self._file = WatchedFile(path, parse_jwks)

    def key(self, kid: str | None, algorithm: str) -> Any:
        """The verification key `kid` names (without a kid: the only key of that algorithm).

        Raises:
            AuthFailed: no such key, or the key is not for this algorithm.
        """
        keys = self._file.get()
        if kid is None:
            matching = [k for k in keys.values() if k.algorithm_name == algorithm]
            if len(matching) != 1:
                raise AuthFailed("unknown_key", "token has no kid and the JWKS has no single key")
            return matching[0].key
        found = keys.get(kid)
        if found is None:
            raise AuthFailed("unknown_key", f"no key {kid!r} in the JWKS")
        if found.algorithm_name != algorithm:
            # An HS256 token "signed" with an RSA public key lands here too.
            raise AuthFailed("bad_algorithm", f"key {kid!r} is for {found.algorithm_name}")
        return found.key


class Verifier:
    """Checks tokens: signature, algorithm, `exp`/`nbf` with leeway, issuer and audience."""

    def __init__(
        self,
        *,
        secret: str = "",
        secret_file: str = "",
        jwks: str = "",
        issuer: str = "",
        audience: str = "",
        leeway: float = 30.0,
    ) -> None:
        """Args:
        secret: HS256 secret ("" accepts no HS256 token).
        secret_file: a file holding the HS256 secret, re-read when it changes
            (a mounted Secret; better than an environment variable, which
            every process of the pod can read and no rotation reaches).
        jwks: path of a JWKS file of RS256/ES256/EdDSA public keys ("": none).
        issuer: the `iss` every token must have ("": not checked).
        audience: an `aud` every token must have ("": not checked).
        leeway: seconds of clock skew allowed on `exp` and `nbf`.
        """
        if not secret and not secret_file and not jwks:
            raise ValueError("a Verifier needs a secret or a JWKS file")
        self._secret = secret
        self._secret_file = WatchedFile(secret_file, parse_secret) if secret_file else None
        self._keys = KeySet(jwks) if jwks else None
        self._issuer = issuer or None
        self._audience = audience or None
        self._leeway = leeway

    def verify(self, token: str) -> Identity:
        """The identity a token proves.

        Raises:
            AuthFailed: with the reason it is refused.
        """
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as error:
            raise AuthFailed("malformed", str(error)) from None
        algorithm = header.get("alg")
        key: Any
        secret = self._secret_file.get() if self._secret_file is not None else self._secret
        if algorithm in SECRET_ALGORITHMS and secret:
            key = secret
        elif algorithm in KEY_ALGORITHMS and self._keys is not None:
            kid = header.get("kid")
            key = self._keys.key(kid if isinstance(kid, str) else None, algorithm)
        else:
            raise AuthFailed("bad_algorithm", f"algorithm {algorithm!r} is not accepted")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                options={
                    "require": ["sub"],
                    "verify_aud": self._audience is not None,
                    "verify_iss": self._issuer is not None,
                },
            )
        except jwt.InvalidTokenError as error:
            raise _failure(error) from None
        user = claims.get("sub")
        if not is_valid_user(user):
            raise AuthFailed("bad_user", "sub is not a valid user name")
        expires = claims.get("exp")
        return Identity(str(user), float(expires) if isinstance(expires, int | float) else None)


def bearer_token(authorization: str | None, query: dict[str, list[str]]) -> str:
    """The token of a request: `Authorization: Bearer` first, then `?token=`."""
    if authorization:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return query.get("token", [""])[0]


def authenticate(target: str, authorization: str | None, verifier: Verifier | None) -> Identity:
    """Who a handshake request is for.

    Args:
        target: the request target, path and query (`/ws?user=alice`).
        authorization: the Authorization header, if any.
        verifier: checks tokens; None means auth is off and `?user=` names the user.

    Raises:
        HandshakeRefused: 404 for another path.
        AuthFailed: no, or a bad, token or user name.
    """
    path, _, query = target.partition("?")
    if path != WS_PATH:
        raise HandshakeRefused(HTTPStatus.NOT_FOUND, f"no WebSocket endpoint here; use {WS_PATH}")
    try:
        params = parse_qs(query, max_num_fields=16)
    except ValueError:
        raise AuthFailed("malformed", "too many query parameters") from None
    if verifier is None:
        user = params.get("user", [""])[0]
        if not is_valid_user(user):
            raise AuthFailed("bad_user", "user must match ^[a-z0-9][a-z0-9_-]{0,31}$")
        return Identity(user)
    token = bearer_token(authorization, params)
    if not token:
        raise AuthFailed("missing_token", "no Authorization: Bearer header and no ?token=")
    return verifier.verify(token)
