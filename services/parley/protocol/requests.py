"""Parse one client text frame into a typed, validated request (DESIGN §5)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import regex

from parley.protocol.errors import ErrorCode, ProtocolError

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
"""Room and user names (matched whole, ASCII only)."""
MAX_USER_CHARS = 32
MAX_TEXT_CHARS = 4000
MAX_ID_CHARS = 128
MAX_EMOJI_BYTES = 32
GRAPHEME = regex.compile(r"\X")
"""One user-perceived character (an extended grapheme cluster, UAX #29)."""
MAX_LIMIT = 500
DEFAULT_LIMIT = 50
MAX_RETAIN = 2**31 - 1
"""Largest retention bound accepted (messages or seconds)."""
MAX_SEQ = 2**63 - 1
"""Largest since/before accepted: beyond it no room has entries, and it fits every int type."""
MAX_TOKEN_CHARS = 8192


class FrameLimits:
    """How deep and how long-numbered a client's JSON may be (gateway flags)."""

    __slots__ = ("decoder", "max_depth", "max_number_chars")

    def __init__(self, max_depth: int = 8, max_number_chars: int = 24) -> None:
        self.max_depth = max_depth
        self.max_number_chars = max_number_chars
        # Numbers are checked as the C scanner meets them, before Python turns
        # a 4,000-digit literal into an int (quadratic) or 1e999 into inf.
        self.decoder = json.JSONDecoder(
            parse_int=self._int, parse_float=self._float, parse_constant=_no_constant
        )

    def _int(self, text: str) -> int:
        if len(text) > self.max_number_chars:
            raise ValueError("number too long")
        return int(text)

    def _float(self, text: str) -> float:
        if len(text) > self.max_number_chars:
            raise ValueError("number too long")
        value = float(text)
        if value in (float("inf"), float("-inf")):
            raise ValueError("number out of range")
        return value


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


DEFAULT_FRAME_LIMITS = FrameLimits()


def _deeper_than(container: dict[str, Any] | list[Any], depth: int) -> bool:
    """True when `container` nests objects/arrays more than `depth` levels deep
    (itself being the first). A plain loop: every frame passes through here."""
    if depth <= 0:
        return True
    for child in container.values() if isinstance(container, dict) else container:
        if isinstance(child, dict | list) and _deeper_than(child, depth - 1):
            return True
    return False


@dataclass(frozen=True, slots=True)
class RoomsRequest:
    """List every live room."""

    id: str | None = None


@dataclass(frozen=True, slots=True)
class CreateRequest:
    """Create a room owned by the caller; `retain_*` (0: the default) is the
    room's own retention: its last N messages, those of the last N seconds."""

    room: str
    id: str | None = None
    retain_messages: int = 0
    retain_seconds: int = 0
    private: bool = False


@dataclass(frozen=True, slots=True)
class JoinRequest:
    """Join a room (if not a member yet) and subscribe this connection to it.

    `since` None means "the last 50 entries"; otherwise every entry with a
    greater seq is sent.
    """

    room: str
    since: int | None = None
    id: str | None = None


@dataclass(frozen=True, slots=True)
class SendRequest:
    """Publish a message; `id` makes retries idempotent."""

    room: str
    text: str
    id: str | None = None


@dataclass(frozen=True, slots=True)
class AnnotateRequest:
    """Edit, unsend, react to or unreact to the message at `target`: `action`
    is the frame's type; `text` the new text (edit) or the emoji (react,
    unreact). Acknowledged like a send; `id` makes retries idempotent."""

    action: str
    room: str
    target: int
    text: str = ""
    id: str | None = None


@dataclass(frozen=True, slots=True)
class InviteRequest:
    """Let `user` join a room (a private one: members invite)."""

    room: str
    user: str
    id: str | None = None


@dataclass(frozen=True, slots=True)
class DmRequest:
    """Open (creating it if needed) the caller's direct-message room with `user`."""

    user: str
    id: str | None = None


@dataclass(frozen=True, slots=True)
class TypingRequest:
    """The caller is typing in a room (not stored; no reply)."""

    room: str
    id: str | None = None


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """The caller has read a room up to `seq` (markers only rise)."""

    room: str
    seq: int
    id: str | None = None


@dataclass(frozen=True, slots=True)
class HistoryRequest:
    """Entries before `before` (None: the newest), at most `limit`."""

    room: str
    before: int | None = None
    limit: int = DEFAULT_LIMIT
    id: str | None = None


@dataclass(frozen=True, slots=True)
class MembersRequest:
    """A room's members and whether they are online."""

    room: str
    id: str | None = None


@dataclass(frozen=True, slots=True)
class LeaveRequest:
    """End the caller's membership of a room."""

    room: str
    id: str | None = None


@dataclass(frozen=True, slots=True)
class DeleteRequest:
    """Delete a room (owner only)."""

    room: str
    id: str | None = None


@dataclass(frozen=True, slots=True)
class PingRequest:
    """Liveness check; answered with pong."""

    id: str | None = None


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """A fresh token for this connection (same user), sent before the old one expires."""

    token: str
    id: str | None = None


Request = (
    RoomsRequest
    | CreateRequest
    | JoinRequest
    | SendRequest
    | AnnotateRequest
    | InviteRequest
    | DmRequest
    | TypingRequest
    | ReadRequest
    | HistoryRequest
    | MembersRequest
    | LeaveRequest
    | DeleteRequest
    | PingRequest
    | AuthRequest
)
"""Any parsed client request."""


def is_valid_name(value: object) -> bool:
    """True for a room name: `^[a-z0-9][a-z0-9_-]{0,63}$`."""
    return isinstance(value, str) and NAME_PATTERN.fullmatch(value) is not None


def is_valid_user(value: object) -> bool:
    """True for a user name: a room name of at most 32 characters."""
    return is_valid_name(value) and len(value) <= MAX_USER_CHARS  # type: ignore[arg-type]


def is_valid_emoji(value: object) -> bool:
    """True for one grapheme cluster (skin tones and ZWJ sequences
    included) of at most MAX_EMOJI_BYTES bytes of UTF-8."""
    if not isinstance(value, str) or not value or not _encodable(value):
        return False
    return len(value.encode()) <= MAX_EMOJI_BYTES and GRAPHEME.fullmatch(value) is not None


def dm_room(first: str, second: str) -> str:
    """The name of the one direct-message room of two users (either order):
    a digest, so no pair of names can make another pair's room."""
    a, b = sorted((first, second))
    digest = hashlib.blake2b(f"{a}\n{b}".encode(), digest_size=12).hexdigest()
    return f"dm-{digest}"


def _encodable(value: str) -> bool:
    # json.loads turns "\ud800" into a lone surrogate, which neither protobuf
    # nor a WebSocket text frame can carry; refuse it at the door.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _room(frame: dict[str, Any], rid: str | None) -> str:
    room = frame.get("room")
    if room is None:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "missing field 'room'", rid)
    if not is_valid_name(room):
        raise ProtocolError(
            ErrorCode.BAD_REQUEST,
            "'room' must match ^[a-z0-9][a-z0-9_-]{0,63}$",
            rid,
        )
    return room  # type: ignore[no-any-return]


def _seq(frame: dict[str, Any], key: str, rid: str | None) -> int | None:
    value = frame.get(key)
    if value is None:
        return None
    # bool is an int subclass in Python; true is not a sequence number.
    if type(value) is not int or not 0 <= value <= MAX_SEQ:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"'{key}' must be a non-negative integer", rid)
    return value


def _limit(frame: dict[str, Any], rid: str | None) -> int:
    value = frame.get("limit")
    if value is None:
        return DEFAULT_LIMIT
    if type(value) is not int or not 1 <= value <= MAX_LIMIT:
        raise ProtocolError(
            ErrorCode.BAD_REQUEST, f"'limit' must be an integer from 1 to {MAX_LIMIT}", rid
        )
    return value


def text_problem(text: str) -> tuple[ErrorCode, str] | None:
    """Why a message text is refused, or None. The gateway (frames) and the
    node (gRPC requests, which anyone reaching its port can send) both ask."""
    if not text:
        return ErrorCode.BAD_REQUEST, "'text' must be a non-empty string"
    if len(text) > MAX_TEXT_CHARS:
        return ErrorCode.TOO_LARGE, f"'text' is longer than {MAX_TEXT_CHARS} characters"
    if not _encodable(text):
        return ErrorCode.BAD_REQUEST, "'text' is not valid Unicode"
    return None


def is_valid_id(value: str) -> bool:
    """True for a request id / client message id: at most MAX_ID_CHARS characters."""
    return len(value) <= MAX_ID_CHARS and _encodable(value)


def _text(frame: dict[str, Any], rid: str | None) -> str:
    text = frame.get("text")
    if text is None:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "missing field 'text'", rid)
    if not isinstance(text, str):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "'text' must be a non-empty string", rid)
    problem = text_problem(text)
    if problem is not None:
        raise ProtocolError(problem[0], problem[1], rid)
    return text


def _token(frame: dict[str, Any], rid: str | None) -> str:
    token = frame.get("token")
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
        raise ProtocolError(
            ErrorCode.BAD_REQUEST,
            f"'token' must be a JWT of at most {MAX_TOKEN_CHARS} characters",
            rid,
        )
    return token


def _lenient_id(data: str) -> str | None:
    """The id of a frame refused for its numbers, read by a parser that takes
    them (at most once per refused frame, which the rate limit bounds)."""
    try:
        frame = json.loads(data)
        return _id(frame) if isinstance(frame, dict) else None
    except (ValueError, RecursionError, ProtocolError):
        return None


def _id(frame: dict[str, Any]) -> str | None:
    value = frame.get("id")
    if value is None:
        return None
    if not isinstance(value, str) or not is_valid_id(value):
        # The id itself is unusable, so the error cannot echo it.
        raise ProtocolError(
            ErrorCode.BAD_REQUEST, f"'id' must be a string of at most {MAX_ID_CHARS} characters"
        )
    return value


def parse_request(data: str | bytes, limits: FrameLimits = DEFAULT_FRAME_LIMITS) -> Request:
    """Parse and validate one client frame.

    Args:
        data: the frame's payload; bytes are binary frames, which are refused.
        limits: nesting depth and number length accepted.

    Returns:
        The typed request.

    Raises:
        ProtocolError: malformed JSON, not an object, an unknown `type`, or a
            missing or invalid field. Its `id` is the request's id when that
            could be read.
    """
    if not isinstance(data, str):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "frames must be text (JSON), not binary")
    try:
        frame = limits.decoder.decode(data)
    # RecursionError: nesting deeper than Python recurses; ValueError: bad
    # JSON, or a number over the limits.
    except (ValueError, RecursionError):
        raise ProtocolError(
            ErrorCode.BAD_REQUEST,
            "frame is not valid JSON, or a number in it is too long",
            _lenient_id(data),
        ) from None
    if not isinstance(frame, dict):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "frame must be a JSON object")
    if _deeper_than(frame, limits.max_depth):
        raise ProtocolError(
            ErrorCode.BAD_REQUEST, f"frame nests deeper than {limits.max_depth} levels"
        )
    rid = _id(frame)
    kind = frame.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "missing or non-string field 'type'", rid)
    parser = _PARSERS.get(kind)
    if parser is None:
        shown = kind if len(kind) <= 32 else kind[:32] + "..."
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"unknown type {shown!r}", rid)
    return parser(frame, rid)


def _user(frame: dict[str, Any], rid: str | None) -> str:
    user = frame.get("user")
    if not is_valid_user(user):
        raise ProtocolError(
            ErrorCode.BAD_REQUEST, "'user' must match ^[a-z0-9][a-z0-9_-]{0,31}$", rid
        )
    return user  # type: ignore[return-value]


def _parse_create(frame: dict[str, Any], rid: str | None) -> CreateRequest:
    room = _room(frame, rid)
    private = frame.get("private", False)
    if not isinstance(private, bool):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "'private' must be true or false", rid)
    retention = frame.get("retention")
    if retention is None:
        return CreateRequest(room=room, id=rid, private=private)
    if not isinstance(retention, dict) or not set(retention) <= {"messages", "seconds"}:
        raise ProtocolError(
            ErrorCode.BAD_REQUEST,
            "'retention' must be an object with 'messages' and/or 'seconds'",
            rid,
        )
    bounds = []
    for key in ("messages", "seconds"):
        value = retention.get(key, 0)
        if type(value) is not int or not 0 <= value <= MAX_RETAIN:
            raise ProtocolError(
                ErrorCode.BAD_REQUEST,
                f"'retention.{key}' must be an integer from 0 to {MAX_RETAIN}",
                rid,
            )
        bounds.append(value)
    return CreateRequest(
        room=room, id=rid, retain_messages=bounds[0], retain_seconds=bounds[1], private=private
    )


def _parse_join(frame: dict[str, Any], rid: str | None) -> JoinRequest:
    return JoinRequest(room=_room(frame, rid), since=_seq(frame, "since", rid), id=rid)


def _parse_send(frame: dict[str, Any], rid: str | None) -> SendRequest:
    return SendRequest(room=_room(frame, rid), text=_text(frame, rid), id=rid)


def _target(frame: dict[str, Any], rid: str | None) -> int:
    target = _seq(frame, "seq", rid)
    if target is None:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "missing field 'seq'", rid)
    return target


def _emoji(frame: dict[str, Any], rid: str | None) -> str:
    emoji = frame.get("emoji")
    if not isinstance(emoji, str) or not is_valid_emoji(emoji):
        raise ProtocolError(
            ErrorCode.BAD_REQUEST,
            f"'emoji' must be one emoji (one grapheme of at most {MAX_EMOJI_BYTES} bytes)",
            rid,
        )
    return emoji


def _parse_annotate(frame: dict[str, Any], rid: str | None) -> AnnotateRequest:
    action = frame["type"]
    room, target = _room(frame, rid), _target(frame, rid)
    if action == "edit":
        text = _text(frame, rid)
    elif action in ("react", "unreact"):
        text = _emoji(frame, rid)
    else:
        text = ""
    return AnnotateRequest(action=action, room=room, target=target, text=text, id=rid)


def _parse_history(frame: dict[str, Any], rid: str | None) -> HistoryRequest:
    return HistoryRequest(
        room=_room(frame, rid),
        before=_seq(frame, "before", rid),
        limit=_limit(frame, rid),
        id=rid,
    )


_PARSERS: dict[str, Callable[[dict[str, Any], str | None], Request]] = {
    "rooms": lambda frame, rid: RoomsRequest(id=rid),
    "create": _parse_create,
    "join": _parse_join,
    "send": _parse_send,
    "edit": _parse_annotate,
    "unsend": _parse_annotate,
    "react": _parse_annotate,
    "unreact": _parse_annotate,
    "history": _parse_history,
    "invite": lambda frame, rid: InviteRequest(
        room=_room(frame, rid), user=_user(frame, rid), id=rid
    ),
    "dm": lambda frame, rid: DmRequest(user=_user(frame, rid), id=rid),
    "typing": lambda frame, rid: TypingRequest(room=_room(frame, rid), id=rid),
    "read": lambda frame, rid: ReadRequest(room=_room(frame, rid), seq=_target(frame, rid), id=rid),
    "members": lambda frame, rid: MembersRequest(room=_room(frame, rid), id=rid),
    "leave": lambda frame, rid: LeaveRequest(room=_room(frame, rid), id=rid),
    "delete": lambda frame, rid: DeleteRequest(room=_room(frame, rid), id=rid),
    "ping": lambda frame, rid: PingRequest(id=rid),
    "auth": lambda frame, rid: AuthRequest(token=_token(frame, rid), id=rid),
}
