"""Conversions between log entries and their protobuf forms."""

from __future__ import annotations

from parley._generated import peer_service_pb2 as peer_pb
from parley._generated import room_service_pb2 as room_pb
from parley.room.entries import EntryKind, LogEntry


def entry_to_pb(entry: LogEntry) -> peer_pb.LogEntry:
    """The replication form of an entry."""
    return peer_pb.LogEntry(
        index=entry.index,
        epoch=entry.epoch,
        kind=int(entry.kind),  # type: ignore[arg-type]
        seq=entry.seq,
        user=entry.user,
        text=entry.text,
        ts_ms=entry.ts_ms,
        client_msg_id=entry.client_msg_id,
        target=entry.target,
    )


def entry_from_pb(msg: peer_pb.LogEntry) -> LogEntry:
    """The inverse of entry_to_pb."""
    return LogEntry(
        index=msg.index,
        epoch=msg.epoch,
        kind=EntryKind(msg.kind),
        seq=msg.seq,
        user=msg.user,
        text=msg.text,
        ts_ms=msg.ts_ms,
        client_msg_id=msg.client_msg_id,
        target=msg.target,
    )


def entry_to_client_pb(entry: LogEntry) -> room_pb.Entry:
    """The form gateways receive (no index, epoch or client id)."""
    return room_pb.Entry(
        seq=entry.seq,
        kind=int(entry.kind),  # type: ignore[arg-type]
        user=entry.user,
        # only messages, edits and reactions carry client text; a create
        # entry's text is the replica group, which is the nodes' business
        text=entry.text if entry.kind in CLIENT_TEXT_KINDS else "",
        ts_ms=entry.ts_ms,
        target=entry.target,
    )


CLIENT_TEXT_KINDS = frozenset(
    {EntryKind.MESSAGE, EntryKind.EDIT, EntryKind.REACT, EntryKind.UNREACT}
)
