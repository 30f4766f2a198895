"""Signing keys and tokens as an identity provider makes them, for auth tests."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def private_key_for(algorithm: str) -> PrivateKey:
    if algorithm == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(algorithm)


def public_jwk(key: PrivateKey, algorithm: str, kid: str) -> dict[str, Any]:
    public = key.public_key()
    exporter: Any = {"RS256": RSAAlgorithm, "ES256": ECAlgorithm, "EdDSA": OKPAlgorithm}[algorithm]
    jwk: dict[str, Any] = exporter.to_jwk(public, as_dict=True)
    return {**jwk, "kid": kid, "alg": algorithm, "use": "sig"}


class KeyRing:
    """Private keys by kid; their public halves kept in a JWKS file at `path`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._keys: dict[str, tuple[str, PrivateKey]] = {}

    def add(self, algorithm: str, kid: str | None = None) -> str:
        kid = kid or f"{algorithm.lower()}-{len(self._keys)}-{os.urandom(3).hex()}"
        self._keys[kid] = (algorithm, private_key_for(algorithm))
        self._write()
        return kid

    def remove(self, kid: str) -> None:
        del self._keys[kid]
        self._write()

    def token(self, kid: str, claims: dict[str, Any], headers: dict[str, Any] | None = None) -> str:
        algorithm, key = self._keys[kid]
        return jwt.encode(claims, key, algorithm=algorithm, headers=headers or {"kid": kid})

    def public_pem(self, kid: str) -> bytes:
        return (
            self._keys[kid][1]
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def _write(self) -> None:
        keys = [public_jwk(key, alg, kid) for kid, (alg, key) in self._keys.items()]
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"keys": keys}))
        os.replace(temporary, self.path)
        # A rewrite within the same second must still look changed.
        stamp = time.time() + len(self._keys) * 0.001
        os.utime(self.path, (stamp, stamp))
