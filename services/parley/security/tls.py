"""mTLS between pods: node<->node and gateway->node gRPC.

Both sides show a certificate from the same CA and refuse a peer without one.
Certificates are files (a mounted Secret, as cert-manager writes them) and are
re-read when they change: the server's credentials through gRPC's certificate
fetcher (consulted at each new handshake), the clients' by replacing their
channels (ChannelPool follows `TlsFiles.version`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc

from parley.security.watched import WatchedFile


def _pem(contents: bytes) -> bytes:
    if b"-----BEGIN " not in contents:
        raise ValueError("not a PEM file")
    return contents


@dataclass(frozen=True, slots=True)
class TlsPaths:
    """Where this process's certificate, key and CA bundle are."""

    cert: str
    key: str
    ca: str
    server_name: str

    @classmethod
    def from_config(cls, cert: str, key: str, ca: str, server_name: str) -> TlsPaths | None:
        """The paths when mTLS is configured, None when not.

        Raises:
            ValueError: some but not all three files are given.
        """
        given = [bool(cert), bool(key), bool(ca)]
        if not any(given):
            return None
        if not all(given):
            raise ValueError("mTLS needs --tls-cert, --tls-key and --tls-ca together")
        return cls(cert, key, ca, server_name)


class TlsFiles:
    """The three files, followed; `version` changes when any of them does."""

    def __init__(self, paths: TlsPaths) -> None:
        """Read them now (a missing or broken file stops the process at start).

        Raises:
            OSError, ValueError: a file cannot be read or is not PEM.
        """
        self.paths = paths
        self._cert = WatchedFile(paths.cert, _pem)
        self._key = WatchedFile(paths.key, _pem)
        self._ca = WatchedFile(paths.ca, _pem)

    @property
    def version(self) -> int:
        """Changes whenever a file was re-read (after `refresh()` or a get)."""
        return self._cert.version + self._key.version + self._ca.version

    def refresh(self) -> bool:
        """Look at the files now; True when one changed."""
        changed = [f.refresh() for f in (self._cert, self._key, self._ca)]
        return any(changed)

    def current(self) -> tuple[bytes, bytes, bytes]:
        """(certificate chain, private key, CA bundle), re-read if changed."""
        return self._cert.get(), self._key.get(), self._ca.get()

    def server_credentials(self) -> grpc.ServerCredentials:
        """Server credentials that require a client certificate from the CA
        and pick up new files at the next handshake."""
        cert, key, ca = self.current()
        seen = self.version

        def fetch() -> Any:
            nonlocal seen
            cert, key, ca = self.current()
            if self.version == seen:
                return None  # gRPC keeps the configuration it has
            seen = self.version
            return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)

        initial = grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)
        return grpc.dynamic_ssl_server_credentials(
            initial, fetch, require_client_authentication=True
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """Client credentials: this process's certificate, and the CA to check the node's by."""
        cert, key, ca = self.current()
        return grpc.ssl_channel_credentials(
            root_certificates=ca, private_key=key, certificate_chain=cert
        )

    def channel_options(self) -> list[tuple[str, Any]]:
        """Pod addresses come and go: node certificates name one stable name instead."""
        return [("grpc.ssl_target_name_override", self.paths.server_name)]


def load(cert: str, key: str, ca: str, server_name: str) -> TlsFiles | None:
    """TlsFiles for a process's flags, or None when mTLS is off.

    Raises:
        ValueError, OSError: a partial or unreadable configuration.
    """
    paths = TlsPaths.from_config(cert, key, ca, server_name)
    return TlsFiles(paths) if paths is not None else None
