"""Token checks: HS256 secret, JWKS keys (RS256/ES256/EdDSA), claims, refusals."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from parley.gateway.auth import AuthFailed, Verifier, authenticate, bearer_token
from parley.security import watched
from support.tokens import KeyRing

SECRET = "s3cret-for-tests-only-32-bytes-long!"


def _reason(verifier: Verifier, token: str) -> str:
    with pytest.raises(AuthFailed) as refused:
        verifier.verify(token)
    return refused.value.reason


@pytest.fixture
def ring(tmp_path: Path) -> KeyRing:
    return KeyRing(tmp_path / "jwks.json")


@pytest.mark.parametrize("algorithm", ["RS256", "ES256", "EdDSA"])
def test_jwks_keys_of_every_accepted_algorithm_verify(ring: KeyRing, algorithm: str) -> None:
    kid = ring.add(algorithm)
    verifier = Verifier(jwks=str(ring.path))
    identity = verifier.verify(ring.token(kid, {"sub": "alice", "exp": time.time() + 60}))
    assert identity.user == "alice"
    assert identity.expires is not None and identity.expires > time.time()


def test_hs256_with_a_secret() -> None:
    verifier = Verifier(secret=SECRET)
    token = jwt.encode({"sub": "bob"}, SECRET, algorithm="HS256")
    assert verifier.verify(token).user == "bob"
    assert verifier.verify(token).expires is None
    assert _reason(verifier, jwt.encode({"sub": "bob"}, "x" * 32, algorithm="HS256")) == (
        "bad_signature"
    )


def test_alg_none_is_refused_whatever_is_configured(ring: KeyRing) -> None:
    ring.add("RS256")
    none = jwt.encode({"sub": "bob"}, None, algorithm="none")
    assert _reason(Verifier(secret=SECRET), none) == "bad_algorithm"
    assert _reason(Verifier(jwks=str(ring.path)), none) == "bad_algorithm"
    # A hand-made header: "None", "NONE" and an empty signature.
    for alg in ("None", "NONE", "nOnE"):
        header = jwt.utils.base64url_encode(json.dumps({"alg": alg}).encode()).decode()
        body = jwt.utils.base64url_encode(b'{"sub":"bob"}').decode()
        assert _reason(Verifier(secret=SECRET), f"{header}.{body}.") == "bad_algorithm"


def test_algorithm_confusion_is_refused(ring: KeyRing) -> None:
    """An HS256 token whose "secret" is the RSA public key of the JWKS."""
    kid = ring.add("RS256")
    public_pem = ring.public_pem(kid)
    forged = jwt.api_jws.PyJWS().encode(
        b'{"sub":"mallory"}', key=b"unused-" * 8, algorithm="HS256", headers={"kid": kid}
    )
    # Re-sign with the PEM bytes as the HMAC key, as an attacker would
    # (PyJWT itself refuses to, so do the HMAC by hand).
    head, body, _ = forged.split(".")
    signature = hmac.new(public_pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    token = f"{head}.{body}.{jwt.utils.base64url_encode(signature).decode()}"
    # Keys only: HS256 is not accepted at all.
    assert _reason(Verifier(jwks=str(ring.path)), token) == "bad_algorithm"
    # A secret too: HS256 is checked against the secret, never a JWKS key.
    assert _reason(Verifier(secret=SECRET, jwks=str(ring.path)), token) == "bad_signature"
    # A JWKS key of one algorithm is never used for another.
    es = ring.add("ES256")
    wrong = ring.token(kid, {"sub": "mallory"}, headers={"kid": es})
    assert _reason(Verifier(jwks=str(ring.path)), wrong) in ("bad_algorithm", "bad_signature")


def test_claims_exp_nbf_issuer_audience(ring: KeyRing) -> None:
    kid = ring.add("ES256")
    verifier = Verifier(jwks=str(ring.path), issuer="https://id.example", audience="parley",
                        leeway=5)  # fmt: skip
    now = time.time()
    good = {"sub": "carol", "iss": "https://id.example", "aud": "parley", "exp": now + 60}
    assert verifier.verify(ring.token(kid, good)).user == "carol"
    assert _reason(verifier, ring.token(kid, {**good, "exp": now - 10})) == "expired"
    # within the leeway: accepted
    assert verifier.verify(ring.token(kid, {**good, "exp": now - 2})).user == "carol"
    assert _reason(verifier, ring.token(kid, {**good, "nbf": now + 30})) == "not_yet_valid"
    assert verifier.verify(ring.token(kid, {**good, "nbf": now + 2})).user == "carol"
    assert _reason(verifier, ring.token(kid, {**good, "iss": "https://evil"})) == "wrong_issuer"
    assert _reason(verifier, ring.token(kid, {**good, "aud": "other"})) == "wrong_audience"
    missing_aud = {k: v for k, v in good.items() if k != "aud"}
    assert _reason(verifier, ring.token(kid, missing_aud)) == "malformed"
    assert _reason(verifier, ring.token(kid, {**good, "sub": "Not A Name"})) == "bad_user"
    assert _reason(verifier, ring.token(kid, {k: v for k, v in good.items() if k != "sub"})) == (
        "malformed"
    )
    # issuer and audience unset: not checked
    assert Verifier(jwks=str(ring.path)).verify(ring.token(kid, {**good, "aud": "x"})).user


def test_unknown_kid_and_garbage(ring: KeyRing) -> None:
    kid = ring.add("RS256")
    verifier = Verifier(jwks=str(ring.path))
    other = KeyRing(ring.path.with_name("other.json"))
    stranger = other.add("RS256")
    assert _reason(verifier, other.token(stranger, {"sub": "eve"})) == "unknown_key"
    # the same kid, another key: the signature does not verify
    impostor = KeyRing(ring.path.with_name("impostor.json"))
    impostor.add("RS256", kid=kid)
    assert _reason(verifier, impostor.token(kid, {"sub": "eve"})) == "bad_signature"
    for junk in ("", "a.b", "a.b.c", "....", "eyJhbGciOiJSUzI1NiJ9.e30.", "\x00" * 40):
        assert _reason(verifier, junk) in ("malformed", "bad_signature", "unknown_key")


def test_jwks_rotation_without_restart(ring: KeyRing, monkeypatch: Any) -> None:
    """A key added to the file is used, a key removed is refused, a broken
    file keeps the keys already loaded."""
    monkeypatch.setattr(watched, "RECHECK_SECONDS", 0.0)
    old = ring.add("RS256")
    verifier = Verifier(jwks=str(ring.path))
    old_token = ring.token(old, {"sub": "dave"})
    assert verifier.verify(old_token).user == "dave"
    new = ring.add("EdDSA")
    ring.remove(old)
    assert verifier.verify(ring.token(new, {"sub": "dave"})).user == "dave"
    assert _reason(verifier, old_token) == "unknown_key"
    ring.path.write_text("{not json")
    os.utime(ring.path, (time.time() + 5, time.time() + 5))
    assert verifier.verify(ring.token(new, {"sub": "dave"})).user == "dave"


def test_bad_jwks_files_stop_the_start(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text('{"keys": []}')
    with pytest.raises(ValueError):
        Verifier(jwks=str(path))
    secret_key = {"kty": "oct", "k": "c2VjcmV0", "kid": "s"}
    path.write_text(json.dumps({"keys": [secret_key]}))
    with pytest.raises(ValueError):
        Verifier(jwks=str(path))  # a symmetric key in a public key set
    with pytest.raises(OSError):
        Verifier(jwks=str(tmp_path / "missing.json"))


def test_bearer_header_and_query() -> None:
    assert bearer_token("Bearer abc", {}) == "abc"
    assert bearer_token("bearer  abc ", {"token": ["q"]}) == "abc"
    assert bearer_token("Basic abc", {"token": ["q"]}) == "q"
    assert bearer_token(None, {"token": ["q"]}) == "q"
    verifier = Verifier(secret=SECRET)
    token = jwt.encode({"sub": "erin"}, SECRET, algorithm="HS256")
    assert authenticate("/ws", f"Bearer {token}", verifier).user == "erin"
    assert authenticate(f"/ws?token={token}", None, verifier).user == "erin"


def test_secret_file_rotation(tmp_path: Path, monkeypatch: Any) -> None:
    """The HS256 key from a mounted Secret's file; a new key replaces the old."""
    monkeypatch.setattr(watched, "RECHECK_SECONDS", 0.0)
    path = tmp_path / "jwt-secret"
    path.write_text(SECRET + "\n")
    verifier = Verifier(secret_file=str(path))
    old = jwt.encode({"sub": "fay"}, SECRET, algorithm="HS256")
    assert verifier.verify(old).user == "fay"
    new_secret = "n" * 40
    path.write_text(new_secret)
    os.utime(path, (time.time() + 5, time.time() + 5))
    assert verifier.verify(jwt.encode({"sub": "fay"}, new_secret, algorithm="HS256")).user == "fay"
    assert _reason(verifier, old) == "bad_signature"
