"""Node errors as the gateway sees them: back to domain errors, and to client
codes, in one place.

Nodes put the precise reason in the trailing metadata `parley-code` (a client
code of DESIGN §5, or `not_administrator`) and, with not_administrator, the
node to ask instead in `parley-administrator`. When a trailer is missing the
gRPC status code decides.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import grpc

from parley.node.errors import ADMINISTRATOR_KEY, CODE_KEY
from parley.protocol.errors import CLIENT_CODES, ErrorCode, ProtocolError
from parley.room.errors import NotAdministrator, Unavailable, error_for_code

_STATUS_CODES: dict[grpc.StatusCode, ErrorCode] = {
    grpc.StatusCode.NOT_FOUND: ErrorCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS: ErrorCode.ROOM_EXISTS,
    grpc.StatusCode.PERMISSION_DENIED: ErrorCode.FORBIDDEN,
    grpc.StatusCode.INVALID_ARGUMENT: ErrorCode.BAD_REQUEST,
    grpc.StatusCode.UNAVAILABLE: ErrorCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: ErrorCode.UNAVAILABLE,
}
"""The fallback when a node error has no parley-code trailer."""

_TRANSPORT_STATUSES = frozenset(
    {grpc.StatusCode.CANCELLED, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
)
"""Statuses that, without a parley-code trailer, are gRPC's own (a connection
reset under a stream: "Internal error from Core", a call cancelled with its
transport), not a node's answer: nodes put a parley-code on every error they
send. Retried like UNAVAILABLE (every routed request is idempotent)."""


def _trailers(error: grpc.aio.AioRpcError) -> dict[str, str]:
    found: dict[str, str] = {}
    # grpc-stubs types metadata items as objects; at run time they are pairs
    trailers = cast("Iterable[tuple[str, str | bytes]]", error.trailing_metadata() or ())
    for key, value in trailers:
        if key in (CODE_KEY, ADMINISTRATOR_KEY):
            found[key] = value.decode() if isinstance(value, bytes) else str(value)
    return found


def classify(code: str, message: str, administrator: str = "") -> Exception:
    """One node error code (a parley-code or PublishResult.error_code) as an exception.

    Returns:
        NotAdministrator or Unavailable (the router retries elsewhere), or
        the ProtocolError the client is answered with (internal when unknown).
    """
    err = error_for_code(code, message, administrator)
    if isinstance(err, NotAdministrator | Unavailable):
        return err
    if code not in CLIENT_CODES:
        return ProtocolError(ErrorCode.INTERNAL, message or "the node failed")
    return ProtocolError(err.code, err.message)


def from_rpc_error(error: grpc.aio.AioRpcError) -> Exception:
    """A failed gRPC call as NotAdministrator, Unavailable or ProtocolError."""
    trailers = _trailers(error)
    message = error.details() or error.code().name.lower()
    code = trailers.get(CODE_KEY)
    if code is None:
        if error.code() in _TRANSPORT_STATUSES:
            return Unavailable(f"the call failed in transit: {message}")
        code = _STATUS_CODES.get(error.code(), ErrorCode.INTERNAL).value
    return classify(code, message, trailers.get(ADMINISTRATOR_KEY, ""))
