"""Properties of frame parsing, over inputs hypothesis makes up.

* Whatever a client sends, parse_request returns a request or raises
  ProtocolError with a client error code: nothing else escapes.
* Whatever it accepts obeys the protocol's limits (names, text, seqs, ids).
* Every valid request, written as a frame, parses back to itself.
* An error's id is the frame's id when that id is usable, never anything else.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from parley.protocol import FrameLimits, ProtocolError, parse_request
from parley.protocol import frames as outgoing
from parley.protocol.errors import CLIENT_CODES
from parley.protocol.requests import (
    MAX_ID_CHARS,
    MAX_SEQ,
    MAX_TEXT_CHARS,
    AnnotateRequest,
    CreateRequest,
    HistoryRequest,
    JoinRequest,
    SendRequest,
    is_valid_emoji,
    is_valid_name,
    is_valid_user,
)

TYPES = ["rooms", "create", "join", "send", "edit", "unsend", "react", "unreact", "history",
         "invite", "dm", "typing", "read", "members", "leave", "delete", "ping",
         "auth"]  # fmt: skip
KEYS = ["type", "room", "text", "id", "since", "seq", "user", "emoji", "limit", "before",
        "retention", "private", "token", "messages", "seconds"]  # fmt: skip

names = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,63}", fullmatch=True)
users = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,31}", fullmatch=True)
seqs = st.integers(min_value=0, max_value=MAX_SEQ)
texts = st.text(min_size=1, max_size=MAX_TEXT_CHARS).filter(lambda t: not _surrogates(t))
ids = st.none() | st.text(max_size=MAX_ID_CHARS).filter(lambda t: not _surrogates(t))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=20,
)
frames = st.dictionaries(st.sampled_from(KEYS), json_values, max_size=6) | st.builds(
    lambda kind, rest: {**rest, "type": kind},
    st.sampled_from(TYPES),
    st.dictionaries(st.sampled_from(KEYS), json_values, max_size=6),
)


edge_values = (
    json_values
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.sampled_from([-1, 0, 1, MAX_SEQ, MAX_SEQ + 1, 500, 501, "", "A", "a" * 65, "👍🏽", "👍👍"])
)
templates = st.one_of(
    st.builds(lambda r, t: {"type": "send", "room": r, "text": t}, names, texts),
    st.builds(lambda r, q: {"type": "join", "room": r, "since": q}, names, seqs),
    st.builds(
        lambda r, q, n: {"type": "history", "room": r, "before": q, "limit": n},
        names,
        seqs,
        st.integers(1, 500),
    ),
    st.builds(
        lambda r, p: {
            "type": "create",
            "room": r,
            "private": p,
            "retention": {"messages": 1, "seconds": 1},
        },
        names,
        st.booleans(),
    ),
    st.builds(lambda r, q, t: {"type": "edit", "room": r, "seq": q, "text": t}, names, seqs, texts),
    st.builds(lambda r, q: {"type": "react", "room": r, "seq": q, "emoji": "👍"}, names, seqs),
    st.builds(lambda r, u: {"type": "invite", "room": r, "user": u}, names, users),
    st.builds(lambda r, q: {"type": "read", "room": r, "seq": q}, names, seqs),
    st.builds(lambda u: {"type": "dm", "user": u}, users),
    st.just({"type": "auth", "token": "a.b.c"}),
)


@st.composite
def nearly_valid_frames(draw: st.DrawFn) -> dict[str, Any]:
    """A valid frame with up to two fields replaced by anything at all."""
    frame = dict(draw(templates))
    for _ in range(draw(st.integers(0, 2))):
        key = draw(st.sampled_from([k for k in frame if k != "type"] or ["id"]))
        frame[key] = draw(edge_values)
    return frame


def _surrogates(text: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def _outcome(data: str | bytes) -> Any:
    try:
        return parse_request(data)
    except ProtocolError as error:
        assert error.code in CLIENT_CODES
        return error


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300) | st.binary(max_size=300))
def test_any_payload_is_a_request_or_a_protocol_error(data: str | bytes) -> None:
    _outcome(data)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(frames | nearly_valid_frames())
def test_accepted_frames_obey_the_limits(frame: dict[str, Any]) -> None:
    outcome = _outcome(json.dumps(frame))
    if isinstance(outcome, ProtocolError):
        rid = frame.get("id")
        usable = isinstance(rid, str) and len(rid) <= MAX_ID_CHARS and not _surrogates(rid)
        assert outcome.id is None or (usable and outcome.id == rid)
        return
    assert outcome.id is None or len(outcome.id) <= MAX_ID_CHARS
    room = getattr(outcome, "room", None)
    assert room is None or is_valid_name(room)
    user = getattr(outcome, "user", None)
    assert user is None or is_valid_user(user)
    if isinstance(outcome, SendRequest):
        assert 0 < len(outcome.text) <= MAX_TEXT_CHARS
    if isinstance(outcome, AnnotateRequest) and outcome.action in ("react", "unreact"):
        assert is_valid_emoji(outcome.text)
    for attribute in ("since", "before", "target"):
        value = getattr(outcome, attribute, None)
        assert value is None or (type(value) is int and 0 <= value <= MAX_SEQ)


@given(names, texts, ids)
def test_a_send_round_trips(room: str, text: str, rid: str | None) -> None:
    frame: dict[str, Any] = {"type": "send", "room": room, "text": text}
    if rid is not None:
        frame["id"] = rid
    assert parse_request(json.dumps(frame)) == SendRequest(room=room, text=text, id=rid)


@given(names, st.none() | seqs, st.none() | seqs, st.integers(1, 500))
def test_joins_and_history_round_trip(
    room: str, since: int | None, before: int | None, limit: int
) -> None:
    join: dict[str, Any] = {"type": "join", "room": room}
    if since is not None:
        join["since"] = since
    assert parse_request(json.dumps(join)) == JoinRequest(room=room, since=since)
    history: dict[str, Any] = {"type": "history", "room": room, "limit": limit}
    if before is not None:
        history["before"] = before
    assert parse_request(json.dumps(history)) == HistoryRequest(
        room=room, before=before, limit=limit
    )


@given(names, st.booleans(), st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1))
def test_a_create_round_trips(room: str, private: bool, messages: int, seconds: int) -> None:
    frame = {"type": "create", "room": room, "private": private,
             "retention": {"messages": messages, "seconds": seconds}}  # fmt: skip
    assert parse_request(json.dumps(frame)) == CreateRequest(
        room=room, retain_messages=messages, retain_seconds=seconds, private=private
    )


@given(st.integers(0, 40), st.integers(1, 12))
def test_nesting_is_refused_exactly_past_the_limit(depth: int, limit: int) -> None:
    frame = '{"type":"ping","x":' + "[" * depth + "0" + "]" * depth + "}"
    outcome = _outcome_with(frame, FrameLimits(max_depth=limit))
    # the object itself is one level, each array one more
    assert isinstance(outcome, ProtocolError) == (depth + 1 > limit)


@given(st.integers(1, 60), st.integers(4, 30))
def test_numbers_are_refused_exactly_past_the_limit(digits: int, limit: int) -> None:
    frame = '{"type":"join","room":"r","since":' + "1" * digits + ',"id":"n"}'
    outcome = _outcome_with(frame, FrameLimits(max_number_chars=limit))
    if digits > limit:
        assert isinstance(outcome, ProtocolError) and outcome.id == "n"


def _outcome_with(data: str, limits: FrameLimits) -> Any:
    try:
        return parse_request(data, limits)
    except ProtocolError as error:
        return error


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.text(), json_values, max_size=6))
@example({"text": "\ud800 lone", "seq": 2**70, "ok": [1.5, None]})
def test_outgoing_frames_are_the_bytes_json_would_write(frame: dict[str, Any]) -> None:
    """The gateway encodes with orjson for speed; what clients get is what
    json's compact encoder wrote before, byte for byte, lone surrogates and
    all (those fall back to json)."""
    assert outgoing.encode(frame) == json.dumps(frame, separators=(",", ":"), ensure_ascii=False)
