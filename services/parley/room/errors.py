"""The domain errors of rooms: what a request can fail with, and nothing else.

The one error model of Parley. Each error carries its wire `code`: a client
error code of DESIGN §5 (`parley.protocol.errors.ErrorCode`), or
`not_administrator` (nodes only: the gateway retries elsewhere). These are
mapped to gRPC statuses in exactly one place (`parley.node.errors`) and back
from them, and to client error frames, in exactly one other
(`parley.gateway.errors`). No transport is imported here.
"""

from __future__ import annotations

from typing import ClassVar

from parley.protocol.errors import ErrorCode

NOT_ADMINISTRATOR = "not_administrator"


class RoomError(Exception):
    """A request failed for a reason the client should hear about."""

    code: ClassVar[str] = ErrorCode.INTERNAL.value

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(RoomError):
    code = ErrorCode.BAD_REQUEST.value


class TooLarge(RoomError):
    code = ErrorCode.TOO_LARGE.value


class NotFound(RoomError):
    code = ErrorCode.NOT_FOUND.value


class RoomExists(RoomError):
    code = ErrorCode.ROOM_EXISTS.value


class NotMember(RoomError):
    code = ErrorCode.NOT_MEMBER.value


class Forbidden(RoomError):
    code = ErrorCode.FORBIDDEN.value


class Unavailable(RoomError):
    """No answer now (down, slow, electing): retry with backoff."""

    code = ErrorCode.UNAVAILABLE.value


class NotAdministrator(RoomError):
    """This node does not administer the room; `hint` may name the node that does."""

    code = NOT_ADMINISTRATOR

    def __init__(self, room: str, hint: str, message: str = "") -> None:
        where = f"ask {hint}" if hint else "administrator unknown"
        super().__init__(message or f"not the administrator of {room}: {where}")
        self.hint = hint


FINAL_ERRORS: tuple[type[RoomError], ...] = (BadRequest, NotFound, RoomExists, NotMember, Forbidden)
"""Errors that are the request's answer (retrying elsewhere changes nothing)."""


def error_for_code(code: str, message: str, administrator: str = "") -> RoomError:
    """The domain error a code names (as a node reported it), internal when unknown."""
    if code == NOT_ADMINISTRATOR:
        return NotAdministrator("", administrator, message)
    known: tuple[type[RoomError], ...] = (*FINAL_ERRORS, Unavailable)
    for cls in known:
        if cls.code == code:
            return cls(message)
    return RoomError(message or "the node failed")
