"""The rules of a room, decided on its state alone.

Who may do what (member? owner? is the name free? is this message a retry?)
is decided here, once, against `RoomState`; the node's RoomService only
translates the outcome into an answer. Every rule raises a domain error
(`parley.room.errors`) or returns what the caller must do.
"""

from __future__ import annotations

from parley.protocol.requests import is_valid_name, is_valid_user
from parley.room.errors import BadRequest, Forbidden, NotFound, NotMember, RoomExists
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


def check_create(state: RoomState, room: str) -> None:
    """A room may be created only while its name is free."""
    if state.exists:
        raise RoomExists(f"room {room} already exists")


def check_exists(state: RoomState, room: str) -> None:
    if not state.exists:
        raise NotFound(f"room {room} does not exist")


def check_member(state: RoomState, room: str, user: str) -> None:
    """Only members read a room's history or leave it."""
    check_exists(state, room)
    if user not in state.members:
        raise NotMember(f"{user} is not a member of {room}")


def check_delete(state: RoomState, room: str, user: str) -> None:
    """Only the owner deletes a room."""
    check_exists(state, room)
    if state.owner != user:
        raise Forbidden(f"only the owner ({state.owner}) may delete {room}")


def needs_join(state: RoomState, room: str, user: str) -> bool:
    """True when joining appends a join entry (False: already a member)."""
    check_exists(state, room)
    return user not in state.members


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
    if client_msg_id:
        seq = state.original(user, client_msg_id)
        if seq is not None:
            return seq
    check_member(state, room, user)
    return None
