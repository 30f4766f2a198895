"""Encoding of the frames the gateway sends (DESIGN §5)."""

from __future__ import annotations

import json

from parley._generated import room_service_pb2 as pb
from parley.protocol import frames
from parley.room.entries import EntryKind, LogEntry

TS = 1795750340123  # 2026-11-27T03:32:20.123Z


def _entry(kind: int, seq: int, user: str = "alice", text: str = "") -> pb.Entry:
    return pb.Entry(seq=seq, kind=kind, user=user, text=text, ts_ms=TS)


def test_timestamps_are_rfc3339_utc_with_milliseconds() -> None:
    """ts_ms renders as YYYY-MM-DDTHH:MM:SS.mmmZ."""
    assert frames.format_ts(TS) == "2026-11-27T03:32:20.123Z"
    assert frames.format_ts(0) == "1970-01-01T00:00:00.000Z"
    assert frames.format_ts(5) == "1970-01-01T00:00:00.005Z"


def test_absurd_timestamp_does_not_raise() -> None:
    """A timestamp out of range renders as the epoch instead of failing."""
    assert frames.format_ts(2**62).endswith("Z")


def test_message_entry_frame() -> None:
    """A message entry is a compact `message` frame."""
    text = frames.encode_entry("general", _entry(pb.ENTRY_KIND_MESSAGE, 7, "bob", "hi 🙂"))
    assert text == (
        '{"type":"message","room":"general","seq":7,"from":"bob","text":"hi 🙂",'
        '"ts":"2026-11-27T03:32:20.123Z"}'
    )


def test_join_and_leave_entries_are_presence_with_seq() -> None:
    """Join and leave entries are presence frames carrying their seq."""
    join = json.loads(frames.encode_entry("g", _entry(pb.ENTRY_KIND_JOIN, 2)) or "")
    leave = json.loads(frames.encode_entry("g", _entry(pb.ENTRY_KIND_LEAVE, 3)) or "")
    assert join == {
        "type": "presence", "room": "g", "seq": 2, "user": "alice", "event": "join",
        "ts": "2026-11-27T03:32:20.123Z",
    }  # fmt: skip
    assert leave["event"] == "leave"
    assert leave["seq"] == 3


def test_create_delete_and_epoch_entries_are_not_delivered() -> None:
    """Create (seq 0), delete and epoch entries have no message frame."""
    for kind in (pb.ENTRY_KIND_CREATE, pb.ENTRY_KIND_DELETE, pb.ENTRY_KIND_EPOCH):
        assert frames.encode_entry("g", _entry(kind, 0)) is None


def test_log_entries_encode_like_proto_entries() -> None:
    """A stored LogEntry encodes the same as the wire Entry."""
    log_entry = LogEntry(index=3, epoch=1, kind=EntryKind.MESSAGE, seq=2, user="a", text="t",
                         ts_ms=TS)  # fmt: skip
    wire = _entry(pb.ENTRY_KIND_MESSAGE, 2, "a", "t")
    assert frames.encode_entry("r", log_entry) == frames.encode_entry("r", wire)


def test_replies_echo_id_after_type() -> None:
    """Replies carry the request id right after the type, and omit it when absent."""
    assert frames.ack("g", 5, "m1") == '{"type":"ack","id":"m1","room":"g","seq":5}'
    assert frames.ack("g", 5) == '{"type":"ack","room":"g","seq":5}'
    assert frames.pong("p") == '{"type":"pong","id":"p"}'
    assert frames.pong() == '{"type":"pong"}'


def test_every_reply_shape() -> None:
    """Each reply has exactly the §5 fields."""
    assert json.loads(frames.created("g", "alice")) == {
        "type": "created", "room": "g", "owner": "alice"}  # fmt: skip
    assert json.loads(frames.joined("g", 4, ["alice", "bob"], "j")) == {
        "type": "joined", "id": "j", "room": "g", "last_seq": 4,
        "members": ["alice", "bob"]}  # fmt: skip
    assert json.loads(frames.left("g")) == {"type": "left", "room": "g"}
    assert json.loads(frames.deleted("g")) == {"type": "deleted", "room": "g"}
    assert json.loads(frames.members("g", [("a", True), ("b", False)])) == {
        "type": "members", "room": "g",
        "members": [{"user": "a", "online": True}, {"user": "b", "online": False}],
    }  # fmt: skip
    info = frames.room_info("g", "alice", 2, 9, "node-1")
    assert json.loads(frames.rooms([info])) == {
        "type": "rooms",
        "rooms": [{"room": "g", "owner": "alice", "members": 2, "last_seq": 9,
                   "administrator": "node-1"}],
    }  # fmt: skip
    with_time = frames.room_info("g", "alice", 2, 9, "node-1", 1_764_560_765_573)
    assert json.loads(frames.rooms([with_time]))["rooms"][0]["last_ts"] == (
        "2025-12-01T03:46:05.573Z"
    )
    assert json.loads(frames.error("not_member", "no", "x")) == {
        "type": "error", "id": "x", "code": "not_member", "message": "no"}  # fmt: skip
    assert json.loads(frames.online("g", "bob", True)) == {
        "type": "presence", "room": "g", "user": "bob", "event": "online"}  # fmt: skip
    assert json.loads(frames.online("g", "bob", False))["event"] == "offline"


def test_history_holds_only_visible_entries_in_order() -> None:
    """History lists message and presence frames, skipping create and delete."""
    entries = [
        _entry(pb.ENTRY_KIND_CREATE, 0),
        _entry(pb.ENTRY_KIND_JOIN, 1, "bob"),
        _entry(pb.ENTRY_KIND_MESSAGE, 2, "bob", "x"),
    ]
    reply = json.loads(frames.history("g", entries, "h"))
    assert reply["type"] == "history"
    assert reply["id"] == "h"
    assert [m["seq"] for m in reply["messages"]] == [1, 2]
    assert reply["messages"][1]["type"] == "message"


def test_frames_are_compact() -> None:
    """No spaces after separators: every byte counts on fan-out."""
    assert ", " not in frames.rooms([frames.room_info("a", "b", 1, 1, "n")])
    assert ": " not in frames.members("g", [("a", True)])
