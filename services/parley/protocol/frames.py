"""Encoders for every frame the gateway sends (DESIGN §5).

Each function returns the finished JSON text. Entries are encoded once by the
fan-out and the same str is written to every member socket.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Iterable
from typing import Any, Protocol

import orjson

from parley._generated import room_service_pb2 as room_pb
from parley.room.entries import EntryKind

_stdlib_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _dumps(frame: dict[str, Any]) -> str:
    """Compact JSON, not ASCII-escaped (text is validated UTF-8).

    orjson writes the same bytes as json's encoder for every frame we make
    at a tenth of the cost; json's encoder is the fallback for what orjson
    refuses (a lone surrogate or an integer past 64 bits from a corrupt
    entry), so both fail or pass the same inputs as before.
    """
    try:
        return orjson.dumps(frame).decode()
    except (orjson.JSONEncodeError, UnicodeDecodeError):
        return _stdlib_dumps(frame)


class EntryLike(Protocol):
    """What the encoders read from an entry (a parley.v1.Entry or a LogEntry)."""

    @property
    def seq(self) -> int: ...
    @property
    def kind(self) -> int: ...
    @property
    def user(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def ts_ms(self) -> int: ...
    @property
    def target(self) -> int: ...


def encode(frame: dict[str, Any]) -> str:
    """Any frame dict as compact JSON text."""
    return _dumps(frame)


def format_ts(ts_ms: int) -> str:
    """Unix milliseconds as RFC 3339 UTC with milliseconds: 2026-11-26T03:32:20.123Z."""
    seconds, millis = divmod(int(ts_ms), 1000)
    try:
        stamp = _second(seconds)
    except (OverflowError, OSError, ValueError):
        # A corrupt timestamp must not take the connection down with it.
        stamp, millis = "1970-01-01T00:00:00", 0
    return f"{stamp}.{millis:03d}Z"


@functools.lru_cache(maxsize=64)
def _second(seconds: int) -> str:
    # (the entries encoded in a second are mostly of a few seconds, and
    # strftime cost more than the rest of a message frame)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def entry_frame(room: str, entry: EntryLike) -> dict[str, Any] | None:
    """The client frame of one log entry, or None for kinds clients never see.

    Messages become `message` frames, joins and leaves `presence` frames with a
    seq. Create (seq 0), delete and epoch entries return None: delete reaches
    clients as a `deleted` frame instead.
    """
    kind = entry.kind
    if kind == EntryKind.MESSAGE:
        return {
            "type": "message",
            "room": room,
            "seq": entry.seq,
            "from": entry.user,
            "text": entry.text,
            "ts": format_ts(entry.ts_ms),
        }
    if kind == EntryKind.EDIT:
        return {
            "type": "edit",
            "room": room,
            "seq": entry.seq,
            "target": entry.target,
            "from": entry.user,
            "text": entry.text,
            "ts": format_ts(entry.ts_ms),
        }
    if kind == EntryKind.UNSEND:
        return {
            "type": "unsent",
            "room": room,
            "seq": entry.seq,
            "target": entry.target,
            "by": entry.user,
            "ts": format_ts(entry.ts_ms),
        }
    if kind == EntryKind.REACT or kind == EntryKind.UNREACT:
        return {
            "type": "reaction",
            "room": room,
            "seq": entry.seq,
            "target": entry.target,
            "from": entry.user,
            "emoji": entry.text,
            "on": kind == EntryKind.REACT,
            "ts": format_ts(entry.ts_ms),
        }
    if kind == EntryKind.JOIN or kind == EntryKind.LEAVE:
        return {
            "type": "presence",
            "room": room,
            "seq": entry.seq,
            "user": entry.user,
            "event": "join" if kind == EntryKind.JOIN else "leave",
            "ts": format_ts(entry.ts_ms),
        }
    return None


def encode_entry(room: str, entry: EntryLike) -> str | None:
    """entry_frame() as JSON text, or None when clients do not see the entry."""
    frame = entry_frame(room, entry)
    return None if frame is None else _dumps(frame)


def _reply(kind: str, rid: str | None, **fields: Any) -> str:
    frame: dict[str, Any] = {"type": kind}
    if rid is not None:
        frame["id"] = rid
    frame.update(fields)
    return _dumps(frame)


def error(code: str, message: str, rid: str | None = None) -> str:
    """`{"type":"error","id":..,"code":..,"message":..}`; id only when known."""
    return _reply("error", rid, code=code, message=message)


def pong(rid: str | None = None) -> str:
    """The reply to ping."""
    return _reply("pong", rid)


def authenticated(user: str, expires: float | None, rid: str | None = None) -> str:
    """The reply to auth: the fresh token is taken; `expires` its exp (unix seconds) or null."""
    return _reply("auth", rid, user=user, expires=expires)


def rooms(items: Iterable[dict[str, Any]], rid: str | None = None) -> str:
    """`rooms` reply; items are {"room","owner","members","last_seq","administrator"}."""
    return _reply("rooms", rid, rooms=list(items))


def room_info(
    room: str,
    owner: str,
    members: int,
    last_seq: int,
    administrator: str,
    last_ts_ms: int = 0,
    *,
    private: bool = False,
    dm_with: str | None = None,
    unread: int | None = None,
) -> dict[str, Any]:
    """One item of the `rooms` reply; `last_ts` (the last entry's time) when
    known, `private`, `dm` with the other user's name (`with`), and the
    caller's `unread` entries when they are a member."""
    info: dict[str, Any] = {
        "room": room,
        "owner": owner,
        "members": members,
        "last_seq": last_seq,
        "administrator": administrator,
    }
    if last_ts_ms:
        info["last_ts"] = format_ts(last_ts_ms)
    if private:
        info["private"] = True
    if dm_with is not None:
        info["dm"] = True
        info["with"] = dm_with
    if unread is not None:
        info["unread"] = unread
    return info


def created(room: str, owner: str, rid: str | None = None) -> str:
    """The reply to create."""
    return _reply("created", rid, room=room, owner=owner)


def joined(
    room: str,
    last_seq: int,
    members: Iterable[str],
    rid: str | None = None,
    first_seq: int | None = None,
    *,
    unread: int | None = None,
    dm_with: str | None = None,
) -> str:
    """The reply to join, sent before any of the room's entries.

    `first_seq`, when given, says a `since` asked for entries retention no
    longer keeps: `truncated` is true, and the backlog starts at first_seq.
    `unread` counts the caller's entries after their read marker; a
    direct-message room says `dm` and `with` whom.
    """
    fields: dict[str, Any] = {"room": room, "last_seq": last_seq, "members": list(members)}
    if first_seq is not None:
        fields.update(truncated=True, first_seq=first_seq)
    if unread is not None:
        fields["unread"] = unread
    if dm_with is not None:
        fields.update(dm=True, **{"with": dm_with})
    return _reply("joined", rid, **fields)


def invited(room: str, user: str, rid: str | None = None) -> str:
    """The reply to invite."""
    return _reply("invited", rid, room=room, user=user)


def invitation(room: str, by: str) -> str:
    """To the invited user's connections."""
    return _dumps({"type": "invitation", "room": room, "from": by})


def mention(room: str, seq: int, by: str) -> str:
    """To a mentioned member's connections, joined to the room or not."""
    return _dumps({"type": "mention", "room": room, "seq": seq, "from": by})


def read(room: str, seq: int, rid: str | None = None) -> str:
    """A read marker moved: to the user's connections (the reply to read too)."""
    return _reply("read", rid, room=room, seq=seq)


def typing(room: str, user: str) -> str:
    """A member is typing (not stored; clients show it for a few seconds)."""
    return _dumps({"type": "typing", "room": room, "user": user})


def ack(room: str, seq: int, rid: str | None = None) -> str:
    """The reply to send: where the message landed."""
    return _reply("ack", rid, room=room, seq=seq)


def history(room: str, entries: Iterable[room_pb.Entry], rid: str | None = None) -> str:
    """The reply to history: the visible entries as their delivery frames,
    oldest first, messages as they stand now (`edited`, `unsent` and
    `reactions` when they apply)."""
    messages = []
    for entry in entries:
        frame = entry_frame(room, entry)
        if frame is None:
            continue
        if entry.edited:
            frame["edited"] = True
        if entry.unsent:
            frame["unsent"] = True
            frame.pop("text", None)
        if entry.reactions:
            frame["reactions"] = {r.emoji: list(r.users) for r in entry.reactions}
        messages.append(frame)
    return _reply("history", rid, room=room, messages=messages)


def members(room: str, items: Iterable[tuple[str, bool]], rid: str | None = None) -> str:
    """The reply to members: [{"user":..,"online":..}] in the given order."""
    listed = [{"user": user, "online": online} for user, online in items]
    return _reply("members", rid, room=room, members=listed)


def left(room: str, rid: str | None = None) -> str:
    """The reply to leave."""
    return _reply("left", rid, room=room)


def deleted(room: str, rid: str | None = None) -> str:
    """Sent to every member socket when a room is deleted (and to the deleter)."""
    return _reply("deleted", rid, room=room)


def online(room: str, user: str, is_online: bool) -> str:
    """A live presence change (no seq): a user's first socket came or last one went."""
    return _dumps(
        {
            "type": "presence",
            "room": room,
            "user": user,
            "event": "online" if is_online else "offline",
        }
    )
