"""Node errors as the gateway sees them, mapped to client codes in one place.

Nodes put the precise reason in the trailing metadata `parley-code` (a client
code of DESIGN §5, or `not_administrator`) and, with not_administrator, the
node to ask instead in `parley-administrator`. When a trailer is missing the
gRPC status code decides.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import grpc

from parley.protocol.errors import CLIENT_CODES, ErrorCode

CODE_KEY = "parley-code"
ADMINISTRATOR_KEY = "parley-administrator"
NOT_ADMINISTRATOR = "not_administrator"

_STATUS_CODES: dict[grpc.StatusCode, ErrorCode] = {
    grpc.StatusCode.NOT_FOUND: ErrorCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS: ErrorCode.ROOM_EXISTS,
    grpc.StatusCode.PERMISSION_DENIED: ErrorCode.FORBIDDEN,
    grpc.StatusCode.INVALID_ARGUMENT: ErrorCode.BAD_REQUEST,
    grpc.StatusCode.UNAVAILABLE: ErrorCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: ErrorCode.UNAVAILABLE,
}
"""The fallback when a node error has no parley-code trailer."""


class GatewayError(Exception):
    """A final answer for the client: an error frame with this code."""

    def __init__(self, code: ErrorCode | str, message: str) -> None:
        super().__init__(message)
        self.code = str(code)
        self.message = message


class NotAdministrator(Exception):
    """The node asked is not the room's administrator; retry elsewhere.

    Attributes:
        hint: the node id to ask instead, or "" when the node does not know.
    """

    def __init__(self, hint: str, message: str = "not the administrator") -> None:
        super().__init__(message)
        self.hint = hint


class Unavailable(Exception):
    """The node could not answer now (down, slow, electing); retry with backoff."""


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
        NotAdministrator for not_administrator, Unavailable for unavailable,
        a GatewayError with the client code otherwise (internal when unknown).
    """
    if code == NOT_ADMINISTRATOR:
        return NotAdministrator(administrator, message)
    if code == ErrorCode.UNAVAILABLE:
        return Unavailable(message)
    if code not in CLIENT_CODES:
        return GatewayError(ErrorCode.INTERNAL, message or "the node failed")
    return GatewayError(code, message)


def from_rpc_error(error: grpc.aio.AioRpcError) -> Exception:
    """A failed gRPC call as NotAdministrator, Unavailable or GatewayError."""
    trailers = _trailers(error)
    message = error.details() or error.code().name.lower()
    code = trailers.get(CODE_KEY)
    if code is None:
        code = _STATUS_CODES.get(error.code(), ErrorCode.INTERNAL).value
    return classify(code, message, trailers.get(ADMINISTRATOR_KEY, ""))
