"""Exceptions raised by the Parley client, each with a sentence a person can act on."""

from __future__ import annotations

# Human explanations for the error codes of DESIGN §5, used when the gateway's
# own message is missing or too terse to show on its own.
_CODE_HINTS: dict[str, str] = {
    "bad_request": "the gateway did not understand the request",
    "unauthorized": "you are not signed in",
    "forbidden": "you are not allowed to do that",
    "not_found": "no such room",
    "room_exists": "a room with that name already exists",
    "not_member": "you are not a member of that room (join it first)",
    "rate_limited": "you are sending too fast; slow down and try again",
    "too_large": "the message is too long (at most 4000 characters)",
    "unavailable": "the room is temporarily unavailable; try again in a moment",
    "internal": "the server hit an internal error",
}


class ParleyError(Exception):
    """Base class of every error the client raises."""


class GatewayUnreachable(ParleyError):
    """The gateway could not be reached (refused, timed out, DNS, TLS...)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach the gateway at {url}: {reason}")
        self.url = url
        self.reason = reason


class Unauthorized(ParleyError):
    """The gateway refused the handshake (HTTP 401): bad or expired token."""

    def __init__(self, url: str, status: int = 401) -> None:
        super().__init__(
            f"the gateway at {url} refused the login (HTTP {status}); check the user name or token"
        )
        self.url = url
        self.status = status


class ConnectionLost(ParleyError):
    """The connection dropped while a request was waiting for its reply."""

    def __init__(self, detail: str = "the connection to the gateway was lost") -> None:
        super().__init__(detail)


class RequestTimeout(ParleyError):
    """No reply arrived within the deadline."""

    def __init__(self, what: str, seconds: float) -> None:
        super().__init__(f"no reply to {what} within {seconds:g} s")


class ServerError(ParleyError):
    """An `error` frame: the gateway understood the request and said no."""

    def __init__(self, code: str, message: str = "", room: str | None = None) -> None:
        self.code = code
        self.server_message = message
        self.room = room
        super().__init__(describe_error(code, message, room))


def describe_error(code: str, message: str = "", room: str | None = None) -> str:
    """A sentence for an error code, preferring the gateway's own words."""
    hint = _CODE_HINTS.get(code, code.replace("_", " "))
    if code == "not_member" and room:
        hint = f"you are not a member of room {room!r} (join it first)"
    elif code == "not_found" and room:
        hint = f"room {room!r} does not exist"
    if message and message.rstrip(".").lower() != hint.lower():
        return f"{hint}: {message}" if code in _CODE_HINTS else message
    return hint
