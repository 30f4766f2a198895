"""Parsing and validation of client frames (DESIGN §5)."""

from __future__ import annotations

import json

import pytest
from parley.protocol import (
    AnnotateRequest,
    CreateRequest,
    DeleteRequest,
    FrameLimits,
    HistoryRequest,
    JoinRequest,
    LeaveRequest,
    MembersRequest,
    PingRequest,
    ProtocolError,
    RoomsRequest,
    SendRequest,
    parse_request,
)
from parley.protocol.requests import is_valid_name, is_valid_user


def _parse(frame: object) -> object:
    return parse_request(json.dumps(frame))


def _error(data: str | bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse_request(data)
    return info.value


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ({"type": "rooms"}, RoomsRequest()),
        ({"type": "rooms", "id": "r1"}, RoomsRequest(id="r1")),
        ({"type": "create", "room": "general"}, CreateRequest(room="general")),
        ({"type": "join", "room": "general"}, JoinRequest(room="general")),
        ({"type": "join", "room": "g", "since": 0}, JoinRequest(room="g", since=0)),
        ({"type": "join", "room": "g", "since": 17, "id": "j"}, JoinRequest("g", 17, "j")),
        (
            {"type": "send", "room": "general", "text": "hi", "id": "m1"},
            SendRequest(room="general", text="hi", id="m1"),
        ),
        ({"type": "send", "room": "a", "text": "x"}, SendRequest(room="a", text="x")),
        ({"type": "history", "room": "a"}, HistoryRequest(room="a", before=None, limit=50)),
        (
            {"type": "history", "room": "a", "before": 10, "limit": 500},
            HistoryRequest(room="a", before=10, limit=500),
        ),
        ({"type": "history", "room": "a", "limit": 1}, HistoryRequest(room="a", limit=1)),
        ({"type": "members", "room": "a"}, MembersRequest(room="a")),
        ({"type": "leave", "room": "a"}, LeaveRequest(room="a")),
        ({"type": "delete", "room": "a"}, DeleteRequest(room="a")),
        ({"type": "ping"}, PingRequest()),
        ({"type": "ping", "id": ""}, PingRequest(id="")),
        ({"type": "ping", "extra": {"nested": [1, 2]}}, PingRequest()),
        ({"type": "join", "room": "g", "since": None}, JoinRequest(room="g")),
    ],
)
def test_every_request_type_parses(frame: dict[str, object], expected: object) -> None:
    """Each §5 request type becomes its dataclass, optional fields defaulted."""
    assert _parse(frame) == expected


@pytest.mark.parametrize(
    "data",
    ["", "{", "not json", "{'type':'ping'}", '{"type":"ping"', "\x00", "[" * 100_000],
)
def test_malformed_json_is_bad_request(data: str) -> None:
    """Anything that is not JSON, deep nesting included, is bad_request without an id."""
    err = _error(data)
    assert err.code == "bad_request"
    assert err.id is None


def test_huge_integer_literal_is_bad_request() -> None:
    """An integer with more digits than Python converts is refused, not a crash."""
    assert _error('{"type":"join","room":"a","since":' + "9" * 5000 + "}").code == "bad_request"


@pytest.mark.parametrize("data", ["[]", "1", '"ping"', "null", "true", '[{"type":"ping"}]'])
def test_non_object_is_bad_request(data: str) -> None:
    """A frame must be a JSON object."""
    assert _error(data).code == "bad_request"


def test_binary_frame_is_bad_request() -> None:
    """Binary frames are refused with bad_request."""
    assert _error(b'{"type":"ping"}').code == "bad_request"


@pytest.mark.parametrize(
    "frame",
    [{}, {"type": None}, {"type": 1}, {"type": ["ping"]}, {"type": "PING"}, {"type": "pong"},
     {"type": "x" * 10_000}, {"type": "ping\u0000"}],
)  # fmt: skip
def test_missing_or_unknown_type_is_bad_request(frame: dict[str, object]) -> None:
    """A missing, non-string or unknown type is bad_request and echoes the id."""
    err = _error(json.dumps({**frame, "id": "q"}))
    assert err.code == "bad_request"
    assert err.id == "q"
    assert len(err.message) < 200


@pytest.mark.parametrize("rid", [1, 1.5, True, ["a"], {"a": 1}, "x" * 129, "\ud800"])
def test_invalid_id_is_bad_request_without_id(rid: object) -> None:
    """An id that is not a string of at most 128 characters cannot be echoed."""
    err = _error(json.dumps({"type": "ping", "id": rid}))
    assert err.code == "bad_request"
    assert err.id is None


def test_id_of_128_characters_is_accepted() -> None:
    """The id limit is inclusive."""
    assert _parse({"type": "ping", "id": "i" * 128}) == PingRequest(id="i" * 128)


@pytest.mark.parametrize(
    "kind", ["create", "join", "send", "history", "members", "leave", "delete"]
)
def test_missing_room_is_bad_request(kind: str) -> None:
    """Every room-scoped request needs a room."""
    err = _error(json.dumps({"type": kind, "text": "t", "id": "k"}))
    assert (err.code, err.id) == ("bad_request", "k")


HOSTILE_NAMES = [
    "", "General", "-abc", "_abc", "a b", "a/b", "a.b", "é", "\uff41", "a\n", "a\u0000",
    "a" * 65, "../etc", "ß", "a\u200b", 1, None, True, ["a"], {"a": "b"}, "🙂",
]  # fmt: skip


@pytest.mark.parametrize("room", [r for r in HOSTILE_NAMES if r is not None])
def test_hostile_room_names_are_bad_request(room: object) -> None:
    """Room names must match ^[a-z0-9][a-z0-9_-]{0,63}$ exactly."""
    err = _error(json.dumps({"type": "join", "room": room, "id": "h"}))
    assert (err.code, err.id) == ("bad_request", "h")


@pytest.mark.parametrize("room", ["a", "0", "a-b_c", "9" * 64, "general", "a-", "a_"])
def test_valid_room_names(room: str) -> None:
    """Names of 1..64 of [a-z0-9_-], not starting with - or _, are accepted."""
    assert _parse({"type": "create", "room": room}) == CreateRequest(room=room)


def test_user_names_are_at_most_32_characters() -> None:
    """Users follow the room pattern with a 32 character limit."""
    assert is_valid_user("a" * 32)
    assert not is_valid_user("a" * 33)
    assert is_valid_name("a" * 33)
    assert not is_valid_user("Alice")
    assert not is_valid_user(None)
    assert not is_valid_user("alice\n")


@pytest.mark.parametrize("text", ["", 1, None, ["hi"], {"t": 1}, True])
def test_bad_text_is_bad_request(text: object) -> None:
    """Text must be a non-empty string."""
    frame = {"type": "send", "room": "a", "id": "s"}
    if text is not None:
        frame["text"] = text
    err = _error(json.dumps(frame))
    assert (err.code, err.id) == ("bad_request", "s")


def test_text_limit_is_4000_characters() -> None:
    """4000 characters (not bytes) are accepted; 4001 are too_large."""
    assert _parse({"type": "send", "room": "a", "text": "é" * 4000}).text == "é" * 4000
    err = _error(json.dumps({"type": "send", "room": "a", "text": "x" * 4001, "id": "t"}))
    assert (err.code, err.id) == ("too_large", "t")


def test_unicode_text_round_trips() -> None:
    """Non-ASCII text (emoji, RTL, combining marks) is kept as sent."""
    text = "héllo 🙂 שלום e\u0301 \u0000"
    assert _parse({"type": "send", "room": "a", "text": text}).text == text


def test_lone_surrogate_text_is_bad_request() -> None:
    """A lone surrogate cannot be stored or sent, so it is refused."""
    err = _error('{"type":"send","room":"a","text":"\\ud800","id":"u"}')
    assert (err.code, err.id) == ("bad_request", "u")


@pytest.mark.parametrize("value", [-1, 1.0, 0.5, "1", True, [1], {"a": 1}, 2**63, 10**23])
def test_bad_since_and_before_are_bad_request(value: object) -> None:
    """since/before must be non-negative integers that fit 63 bits."""
    for kind, key in (("join", "since"), ("history", "before")):
        data = json.dumps({"type": kind, "room": "a", key: value, "id": "n"})
        err = _error(data)
        assert (err.code, err.id) == ("bad_request", "n")


@pytest.mark.parametrize("value", ["1" * 25, "1e999", "-1e999", "NaN", "Infinity", "1." + "5" * 30])
def test_numbers_past_the_limits_are_refused_before_they_are_read(value: str) -> None:
    """A number longer than max_number_chars, or one that is not finite, is a
    bad request (the reply still carries the frame's id)."""
    err = _error(f'{{"type":"join","room":"a","since":{value},"id":"n"}}')
    assert err.code == "bad_request"


def test_nesting_deeper_than_the_limit_is_refused() -> None:
    assert parse_request('{"type":"ping","x":%s}' % ("[" * 7 + "]" * 7))
    err = _error('{"type":"ping","x":%s,"id":"n"}' % ("[" * 8 + "]" * 8))
    assert err.code == "bad_request" and "deeper" in err.message
    shallow = FrameLimits(max_depth=1)
    with pytest.raises(ProtocolError):
        parse_request('{"type":"ping","x":{"y":1}}', shallow)


def test_largest_since_is_accepted() -> None:
    """since up to 2**63-1 is accepted."""
    assert _parse({"type": "join", "room": "a", "since": 2**63 - 1}).since == 2**63 - 1


@pytest.mark.parametrize("limit", [0, -5, 501, 1.0, "50", True, None])
def test_bad_limit_is_bad_request(limit: object) -> None:
    """limit must be an integer from 1 to 500 (null means the default)."""
    frame = {"type": "history", "room": "a", "limit": limit, "id": "l"}
    if limit is None:
        assert _parse(frame).limit == 50
        return
    err = _error(json.dumps(frame))
    assert (err.code, err.id) == ("bad_request", "l")


def test_create_takes_an_optional_retention() -> None:
    """A room's own retention: messages and/or seconds, each 0 (the
    default) up to 2**31 - 1; anything else is a clear bad_request."""
    frame = {"type": "create", "room": "g", "retention": {"messages": 100}}
    assert _parse(frame) == CreateRequest(room="g", retain_messages=100)
    frame = {"type": "create", "room": "g", "retention": {"seconds": 60, "messages": 5}}
    assert _parse(frame) == CreateRequest(room="g", retain_messages=5, retain_seconds=60)
    for bad in (
        [],
        {"messages": -1},
        {"seconds": 2**31},
        {"messages": True},
        {"messages": "10"},
        {"days": 3},
    ):
        err = _error(json.dumps({"type": "create", "room": "g", "retention": bad, "id": "c"}))
        assert err.code == "bad_request" and err.id == "c", bad
        assert "retention" in err.message


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (
            {"type": "edit", "room": "r", "seq": 3, "text": "new", "id": "e"},
            AnnotateRequest("edit", "r", 3, "new", "e"),
        ),
        ({"type": "unsend", "room": "r", "seq": 3}, AnnotateRequest("unsend", "r", 3)),
        (
            {"type": "react", "room": "r", "seq": 0, "emoji": "👍🏽"},
            AnnotateRequest("react", "r", 0, "👍🏽"),
        ),
        (
            {"type": "unreact", "room": "r", "seq": 7, "emoji": "🎉"},
            AnnotateRequest("unreact", "r", 7, "🎉"),
        ),
    ],
)
def test_edits_unsends_and_reactions_parse(frame: dict[str, object], expected: object) -> None:
    assert _parse(frame) == expected


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "edit", "room": "r", "text": "no seq"},
        {"type": "edit", "room": "r", "seq": -1, "text": "x"},
        {"type": "edit", "room": "r", "seq": True, "text": "x"},
        {"type": "edit", "room": "r", "seq": 1},
        {"type": "edit", "room": "r", "seq": 1, "text": ""},
        {"type": "react", "room": "r", "seq": 1},
        {"type": "react", "room": "r", "seq": 1, "emoji": "ab"},
        {"type": "react", "room": "r", "seq": 1, "emoji": "👍👍"},
        {"type": "react", "room": "r", "seq": 1, "emoji": 5},
        {"type": "unreact", "room": "r", "seq": 1, "emoji": "x" * 40},
        {"type": "unsend", "seq": 1},
    ],
)
def test_bad_edits_and_reactions_are_bad_request(frame: dict[str, object]) -> None:
    assert _error(json.dumps(frame)).code == "bad_request"
