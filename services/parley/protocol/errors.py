"""The client error codes of DESIGN §5 and the one error type that carries them."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Every `code` an error frame may carry; the values are the wire strings."""

    BAD_REQUEST = "bad_request"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    ROOM_EXISTS = "room_exists"
    NOT_MEMBER = "not_member"
    RATE_LIMITED = "rate_limited"
    LIMIT_EXCEEDED = "limit_exceeded"
    TOO_LARGE = "too_large"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"


CLIENT_CODES = frozenset(code.value for code in ErrorCode)
"""The wire strings of every client error code."""


class ProtocolError(Exception):
    """A request the gateway answers with an error frame.

    Attributes:
        code: the client error code.
        message: a human sentence for the client.
        id: the request's `id` when it could be read, else None.
    """

    def __init__(self, code: ErrorCode | str, message: str, id: str | None = None) -> None:
        super().__init__(message)
        self.code = str(code)
        self.message = message
        self.id = id

    def __repr__(self) -> str:
        return f"ProtocolError({self.code!r}, {self.message!r}, id={self.id!r})"
