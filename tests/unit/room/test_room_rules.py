"""The rules of a room, on RoomState alone, and the domain error codes."""

from __future__ import annotations

import pytest
from parley.protocol.errors import CLIENT_CODES
from parley.room import rules
from parley.room.annotations import fold
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


ROOM = state_of(
    (EntryKind.CREATE, "owner", "", ""),
    (EntryKind.JOIN, "ann", "", ""),
    (EntryKind.JOIN, "bob", "", ""),
)
HELLO = LogEntry(4, 1, EntryKind.MESSAGE, 3, "ann", "hello", 0, "m1")


def _annotate(user: str, kind: EntryKind, text: str = "", target: LogEntry | None = HELLO) -> None:
    folded = fold(target, []) if target is not None else None
    rules.check_annotation(ROOM, "r", user, kind, text, target, folded)


def test_only_the_author_edits_a_message() -> None:
    _annotate("ann", EntryKind.EDIT, "hello!")
    with pytest.raises(Forbidden):
        _annotate("bob", EntryKind.EDIT, "mine now")
    with pytest.raises(Forbidden):
        _annotate("owner", EntryKind.EDIT, "the owner neither")
    with pytest.raises(BadRequest):
        _annotate("ann", EntryKind.EDIT, "")


def test_the_author_or_the_owner_unsends_a_message() -> None:
    _annotate("ann", EntryKind.UNSEND)
    _annotate("owner", EntryKind.UNSEND)
    with pytest.raises(Forbidden):
        _annotate("bob", EntryKind.UNSEND)


def test_members_react_with_one_emoji() -> None:
    for emoji in ("👍", "👍🏽", "👨‍👩‍👧", "a"):
        _annotate("bob", EntryKind.REACT, emoji)
        _annotate("bob", EntryKind.UNREACT, emoji)
    for bad in ("", "👍👍", "ab", "🏳️‍🌈" * 3):
        with pytest.raises(BadRequest):
            _annotate("bob", EntryKind.REACT, bad)
    with pytest.raises(NotMember):
        _annotate("eve", EntryKind.REACT, "👍")


def test_an_annotation_needs_a_message_that_still_stands() -> None:
    with pytest.raises(NotFound):
        _annotate("ann", EntryKind.EDIT, "x", target=None)
    join = LogEntry(3, 1, EntryKind.JOIN, 2, "bob")
    with pytest.raises(NotFound):
        _annotate("bob", EntryKind.REACT, "👍", target=join)
    unsend = LogEntry(5, 1, EntryKind.UNSEND, 4, "ann", target=HELLO.seq)
    with pytest.raises(NotFound):
        rules.check_annotation(ROOM, "r", "ann", EntryKind.EDIT, "x", HELLO, fold(HELLO, [unsend]))


def test_folding_applies_edits_unsends_and_reactions_in_log_order() -> None:
    def about(i: int, kind: EntryKind, user: str, text: str = "") -> LogEntry:
        return LogEntry(i, 1, kind, i - 1, user, text, 0, "", target=HELLO.seq)

    folded = fold(
        HELLO,
        [
            about(5, EntryKind.EDIT, "ann", "hello!"),
            about(6, EntryKind.REACT, "bob", "👍"),
            about(7, EntryKind.REACT, "ann", "👍"),
            about(8, EntryKind.REACT, "bob", "👍"),  # once per user and emoji
            about(9, EntryKind.REACT, "bob", "🎉"),
            about(10, EntryKind.UNREACT, "bob", "🎉"),
            about(11, EntryKind.EDIT, "ann", "hello again"),
        ],
    )
    assert (folded.text, folded.edited, folded.unsent) == ("hello again", True, False)
    assert folded.reactions == {"👍": ["bob", "ann"]}
    gone = fold(
        HELLO,
        [about(5, EntryKind.UNSEND, "ann"), about(6, EntryKind.EDIT, "ann", "back?")],
    )
    assert (gone.text, gone.unsent, gone.reactions) == ("", True, {})


def test_an_annotation_is_retried_like_a_send() -> None:
    edit = LogEntry(5, 1, EntryKind.EDIT, 4, "ann", "hello!", 0, "e1", target=HELLO.seq)
    state = state_of(
        (EntryKind.CREATE, "owner", "", ""),
        (EntryKind.JOIN, "ann", "", ""),
    )
    state.apply(HELLO)
    state.apply(edit)
    assert rules.check_retry(state, "r", "ann", "e1") == 4
    assert rules.check_retry(state, "r", "ann", "e2") is None


def _private(*more: tuple[EntryKind, str, str, str]) -> RoomState:
    return state_of((EntryKind.CREATE, "owner", "a;private", ""), *more)


def test_a_private_room_answers_everyone_else_as_if_it_did_not_exist() -> None:
    room = _private((EntryKind.JOIN, "ann", "", ""))
    for check in (
        lambda: rules.needs_join(room, "r", "eve"),
        lambda: rules.check_member(room, "r", "eve"),
        lambda: rules.check_publish(room, "r", "eve", "hi", ""),
        lambda: rules.check_invite(room, "r", "eve", "mallory"),
        lambda: rules.check_read(room, "r", "eve", 1),
    ):
        with pytest.raises(NotFound, match="does not exist"):
            check()
    assert rules.needs_join(room, "r", "ann") is False
    public = state_of((EntryKind.CREATE, "owner", "a", ""))
    assert rules.needs_join(public, "r", "eve") is True


def test_members_invite_to_a_private_room_and_invitees_may_join() -> None:
    room = _private((EntryKind.JOIN, "ann", "", ""))
    assert rules.check_invite(room, "r", "ann", "bob") is True
    room.apply(LogEntry(9, 1, EntryKind.INVITE, room.last_seq, "ann", "bob"))
    assert rules.check_invite(room, "r", "ann", "bob") is False  # once
    assert rules.needs_join(room, "r", "bob") is True
    with pytest.raises(NotMember):  # an invitee is not a member yet
        rules.check_invite(room, "r", "bob", "carol")
    room.apply(LogEntry(10, 1, EntryKind.JOIN, room.last_seq + 1, "bob"))
    assert "bob" in room.members and not room.invited
    with pytest.raises(BadRequest):
        rules.check_invite(room, "r", "ann", "Not A User")
    # a public room: anyone invites, and nothing is stored
    assert rules.check_invite(LOBBY, "r", "stranger", "bob") is False


def test_a_direct_message_room_has_its_two_users_for_good() -> None:
    name = rules.dm_room("ann", "bob")
    assert name == rules.dm_room("bob", "ann") != rules.dm_room("ann", "bo")
    rules.check_names(name)
    rules.check_dm(name, "ann", ["ann", "bob"])
    for room, user, users in (
        (name, "eve", ["ann", "bob"]),
        (name, "ann", ["ann", "ann"]),
        (name, "ann", ["ann"]),
        ("dm-other", "ann", ["ann", "bob"]),
    ):
        with pytest.raises(BadRequest):
            rules.check_dm(room, user, users)
    dm = state_of((EntryKind.CREATE, "ann", "a;private;dm=ann,bob", ""))
    assert dm.members == {"ann", "bob"}
    with pytest.raises(Forbidden):
        rules.check_invite(dm, name, "ann", "eve")


def test_read_markers_only_rise_and_count_what_is_unread() -> None:
    room = state_of(
        (EntryKind.CREATE, "owner", "a", ""),
        (EntryKind.JOIN, "ann", "", ""),
        *[(EntryKind.MESSAGE, "owner", f"m{i}", "") for i in range(5)],
    )
    assert room.unread("ann") == 5  # everything after her join
    assert rules.check_read(room, "r", "ann", 4) == 4
    room.apply(LogEntry(20, 1, EntryKind.READ, room.last_seq, "ann", target=4))
    assert room.unread("ann") == 2
    assert rules.check_read(room, "r", "ann", 3) is None  # lower: ignored
    assert rules.check_read(room, "r", "ann", 10**9) == room.last_seq  # capped
