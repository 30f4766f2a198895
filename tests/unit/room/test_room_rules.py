"""The rules of a room, on RoomState alone, and the domain error codes."""

from __future__ import annotations

import pytest
from parley.protocol.errors import CLIENT_CODES
from parley.room import rules
from parley.room.entries import EntryKind, LogEntry
from parley.room.errors import (
    FINAL_ERRORS,
    BadRequest,
    Forbidden,
    NotAdministrator,
    NotFound,
    NotMember,
    RoomError,
    RoomExists,
    Unavailable,
    error_for_code,
)
from parley.room.state import RoomState


def state_of(*entries: tuple[EntryKind, str, str, str]) -> RoomState:
    log = [
        LogEntry(i, 1, kind, i - 1, user, text, 0, msg_id)
        for i, (kind, user, text, msg_id) in enumerate(entries, start=1)
    ]
    return RoomState.from_entries(log)


LOBBY = state_of(
    (EntryKind.CREATE, "owner", "", ""),
    (EntryKind.JOIN, "ann", "", ""),
    (EntryKind.MESSAGE, "ann", "hi", "m1"),
    (EntryKind.LEAVE, "ann", "", ""),
)


def test_a_name_is_free_until_created_and_again_after_delete() -> None:
    rules.check_create(RoomState(), "r")
    with pytest.raises(RoomExists):
        rules.check_create(LOBBY, "r")
    deleted = state_of((EntryKind.CREATE, "o", "", ""), (EntryKind.DELETE, "o", "", ""))
    rules.check_create(deleted, "r")


def test_only_members_pass_and_only_the_owner_deletes() -> None:
    rules.check_member(LOBBY, "r", "owner")
    with pytest.raises(NotMember):
        rules.check_member(LOBBY, "r", "ann")  # she left
    with pytest.raises(NotFound):
        rules.check_member(RoomState(), "r", "owner")
    rules.check_delete(LOBBY, "r", "owner")
    with pytest.raises(Forbidden):
        rules.check_delete(LOBBY, "r", "bob")


def test_join_appends_only_for_newcomers() -> None:
    assert rules.needs_join(LOBBY, "r", "ann")
    assert not rules.needs_join(LOBBY, "r", "owner")
    with pytest.raises(NotFound):
        rules.needs_join(RoomState(), "r", "ann")


def test_publish_rules() -> None:
    assert rules.check_publish(LOBBY, "r", "owner", "hello", "x1") is None
    # ann's retry of m1 is answered with its seq although she has left
    assert rules.check_publish(LOBBY, "r", "ann", "hi", "m1") == 2
    with pytest.raises(NotMember):
        rules.check_publish(LOBBY, "r", "ann", "new", "m2")
    with pytest.raises(BadRequest):
        rules.check_publish(LOBBY, "r", "owner", "", "x2")


def test_every_code_is_a_client_code_or_not_administrator() -> None:
    for cls in (*FINAL_ERRORS, Unavailable, RoomError):
        assert cls.code in CLIENT_CODES
        assert type(error_for_code(cls.code, "m")) is cls
    err = error_for_code("not_administrator", "m", "n2")
    assert isinstance(err, NotAdministrator) and err.hint == "n2"
    assert type(error_for_code("no_such_code", "m")) is RoomError


def test_names_are_checked_on_the_node_too() -> None:
    rules.check_names("general", "alice")
    rules.check_names("general")
    for room, user in (("../../ETC passwd", "a"), ("ok", "Mallory With Spaces!"), ("", "a"),
                       ("x" * 65, "a"), ("ok", "u" * 33)):  # fmt: skip
        with pytest.raises(BadRequest):
            rules.check_names(room, user)
