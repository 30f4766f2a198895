"""The rules of a room, decided on its state alone.

Who may do what (member? owner? is the name free? is this message a retry?)
is decided here, once, against `RoomState`; the node's RoomService only
translates the outcome into an answer. Every rule raises a domain error
(`parley.room.errors`) or returns what the caller must do.
"""

from __future__ import annotations

from collections.abc import Sequence

from parley.protocol.errors import ErrorCode
from parley.protocol.requests import (
    MAX_ID_CHARS,
    dm_room,
    is_valid_emoji,
    is_valid_id,
    is_valid_name,
    is_valid_user,
    text_problem,
)
from parley.room.annotations import Folded
from parley.room.entries import EntryKind, LogEntry
from parley.room.errors import BadRequest, Forbidden, NotFound, NotMember, RoomExists, TooLarge
from parley.room.state import RoomState


def check_names(room: str, user: str | None = None) -> None:
    """Room and user names as the protocol defines them.

    Gateways check them too; nodes check again because anyone who reaches a
    node's port speaks to it directly.
    """
    if not is_valid_name(room):
        raise BadRequest("room must match ^[a-z0-9][a-z0-9_-]{0,63}$")
    if user is not None and not is_valid_user(user):
        raise BadRequest("user must match ^[a-z0-9][a-z0-9_-]{0,31}$")


def check_published(kind: EntryKind, text: str, msg_id: str) -> None:
    """The text and id of a publish, by the rules the gateway applies to frames."""
    if not is_valid_id(msg_id):
        raise BadRequest(f"client_msg_id must be at most {MAX_ID_CHARS} characters")
    if kind in (EntryKind.MESSAGE, EntryKind.EDIT):
        problem = text_problem(text)
        if problem is not None:
            code, message = problem
            raise (TooLarge if code is ErrorCode.TOO_LARGE else BadRequest)(message)


def check_create(state: RoomState, room: str) -> None:
    """A room may be created only while its name is free."""
    if state.exists:
        raise RoomExists(f"room {room} already exists")


def check_exists(state: RoomState, room: str) -> None:
    if not state.exists:
        raise NotFound(f"room {room} does not exist")


def check_visible(state: RoomState, room: str, user: str) -> None:
    """A private room is there only for its members and invitees: to anyone
    else it answers as if it did not exist (its name tells nothing)."""
    if not state.exists or not state.sees(user):
        raise NotFound(f"room {room} does not exist")


def check_member(state: RoomState, room: str, user: str) -> None:
    """Only members read a room's history or leave it."""
    check_visible(state, room, user)
    if user not in state.members:
        raise NotMember(f"{user} is not a member of {room}")


def check_delete(state: RoomState, room: str, user: str) -> None:
    """Only the owner deletes a room."""
    check_exists(state, room)
    if state.owner != user:
        raise Forbidden(f"only the owner ({state.owner}) may delete {room}")


def needs_join(state: RoomState, room: str, user: str) -> bool:
    """True when joining appends a join entry (False: already a member)."""
    check_visible(state, room, user)
    return user not in state.members


def check_invite(state: RoomState, room: str, user: str, invitee: str) -> bool:
    """May `user` invite `invitee`? Anyone may to a public room (nothing is
    stored: anyone may join it); to a private one, its members, once.

    Returns:
        True when an invite entry must be appended.

    Raises:
        NotFound / NotMember: the room is gone, hidden, or the user not in it.
        Forbidden: a direct-message room (it has its two users for good).
    """
    if not is_valid_user(invitee):
        raise BadRequest("user must match ^[a-z0-9][a-z0-9_-]{0,31}$")
    if not state.private:
        check_exists(state, room)
        return False
    check_member(state, room, user)
    if state.dm:
        raise Forbidden("a direct-message room is for its two users only")
    return invitee not in state.members and invitee not in state.invited


def check_dm(room: str, user: str, users: Sequence[str]) -> None:
    """A direct-message room is created by one of its two users, under
    `dm_room`'s name for them.

    Raises:
        BadRequest: not two distinct valid users including `user`, or
            another name.
    """
    if len(users) != 2 or users[0] == users[1] or user not in users:
        raise BadRequest("a direct-message room has two users, its creator one of them")
    for name in users:
        if not is_valid_user(name):
            raise BadRequest("user must match ^[a-z0-9][a-z0-9_-]{0,31}$")
    if room != dm_room(users[0], users[1]):
        raise BadRequest("a direct-message room is named by dm_room")


def check_read(state: RoomState, room: str, user: str, seq: int) -> int | None:
    """Where a read marker moves: the seq (at most the room's last), or None
    when it would not move forward (markers only rise).

    Raises:
        NotFound / NotMember: the room is gone, hidden, or the user not in it.
    """
    check_member(state, room, user)
    seq = min(seq, max(state.last_seq, 0))
    return seq if seq > state.reads.get(user, 0) else None


def check_publish(
    state: RoomState, room: str, user: str, text: str, client_msg_id: str
) -> int | None:
    """Decide a publish.

    A retry (same user and client message id within the de-duplication
    window) is answered with the original seq even if the user has left
    since: the message was accepted while they were a member.

    Returns:
        The seq of the original message for a retry, or None for a new
        message to append.

    Raises:
        BadRequest: empty text.
        NotFound / NotMember: the room is gone, or the user is not in it.
    """
    if not text:
        raise BadRequest("text must not be empty")
    return check_retry(state, room, user, client_msg_id)


def check_retry(state: RoomState, room: str, user: str, client_msg_id: str) -> int | None:
    """The seq of the entry this (user, id) appended within the
    de-duplication window (a retry), or None after checking membership."""
    if client_msg_id:
        seq = state.original(user, client_msg_id)
        if seq is not None:
            return seq
    check_member(state, room, user)
    return None


def check_annotation(
    state: RoomState,
    room: str,
    user: str,
    kind: EntryKind,
    text: str,
    target: LogEntry | None,
    folded: Folded | None,
) -> None:
    """May `user` edit, unsend, react or unreact to the message `target` (as
    it stands, `folded`)? Its author edits; its author or the room's owner
    unsends; any member reacts.

    Raises:
        NotMember: the user is not a member.
        NotFound: no such message (or it was unsent).
        Forbidden: not the author (edit), nor the owner (unsend).
        BadRequest: an empty edit, or an emoji that is not one grapheme.
    """
    check_member(state, room, user)
    if target is None or target.kind is not EntryKind.MESSAGE:
        raise NotFound(f"{room} has no message with that seq")
    if folded is not None and folded.unsent:
        raise NotFound(f"message {target.seq} of {room} was unsent")
    if kind is EntryKind.EDIT:
        if not text:
            raise BadRequest("text must not be empty")
        if target.user != user:
            raise Forbidden("only its author may edit a message")
    elif kind is EntryKind.UNSEND:
        if target.user != user and state.owner != user:
            raise Forbidden("only its author or the room's owner may unsend a message")
    elif kind in (EntryKind.REACT, EntryKind.UNREACT):
        if not is_valid_emoji(text):
            raise BadRequest("a reaction is one emoji (one grapheme of at most 32 bytes)")
    else:
        raise BadRequest(f"{kind.name.lower()} is not about a message")
