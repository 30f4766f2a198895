from parley._generated import room_service_pb2 as _room_service_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LogEntry(_message.Message):
    __slots__ = ("index", "epoch", "kind", "seq", "user", "text", "ts_ms", "client_msg_id")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TS_MS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_MSG_ID_FIELD_NUMBER: _ClassVar[int]
    index: int
    epoch: int
    kind: _room_service_pb2.EntryKind
    seq: int
    user: str
    text: str
    ts_ms: int
    client_msg_id: str
    def __init__(self, index: _Optional[int] = ..., epoch: _Optional[int] = ..., kind: _Optional[_Union[_room_service_pb2.EntryKind, str]] = ..., seq: _Optional[int] = ..., user: _Optional[str] = ..., text: _Optional[str] = ..., ts_ms: _Optional[int] = ..., client_msg_id: _Optional[str] = ...) -> None: ...

class RoomAppend(_message.Message):
    __slots__ = ("room", "epoch", "prev_index", "prev_epoch", "entries", "commit_index", "transfer")
    ROOM_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    PREV_INDEX_FIELD_NUMBER: _ClassVar[int]
    PREV_EPOCH_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    COMMIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_FIELD_NUMBER: _ClassVar[int]
    room: str
    epoch: int
    prev_index: int
    prev_epoch: int
    entries: _containers.RepeatedCompositeFieldContainer[LogEntry]
    commit_index: int
    transfer: bool
    def __init__(self, room: _Optional[str] = ..., epoch: _Optional[int] = ..., prev_index: _Optional[int] = ..., prev_epoch: _Optional[int] = ..., entries: _Optional[_Iterable[_Union[LogEntry, _Mapping]]] = ..., commit_index: _Optional[int] = ..., transfer: _Optional[bool] = ...) -> None: ...

class AppendRequest(_message.Message):
    __slots__ = ("sender", "rooms")
    SENDER_FIELD_NUMBER: _ClassVar[int]
    ROOMS_FIELD_NUMBER: _ClassVar[int]
    sender: str
    rooms: _containers.RepeatedCompositeFieldContainer[RoomAppend]
    def __init__(self, sender: _Optional[str] = ..., rooms: _Optional[_Iterable[_Union[RoomAppend, _Mapping]]] = ...) -> None: ...

class RoomAppendResult(_message.Message):
    __slots__ = ("room", "epoch", "success", "match_index", "retry_index")
    ROOM_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    MATCH_INDEX_FIELD_NUMBER: _ClassVar[int]
    RETRY_INDEX_FIELD_NUMBER: _ClassVar[int]
    room: str
    epoch: int
    success: bool
    match_index: int
    retry_index: int
    def __init__(self, room: _Optional[str] = ..., epoch: _Optional[int] = ..., success: _Optional[bool] = ..., match_index: _Optional[int] = ..., retry_index: _Optional[int] = ...) -> None: ...

class AppendResponse(_message.Message):
    __slots__ = ("rooms",)
    ROOMS_FIELD_NUMBER: _ClassVar[int]
    rooms: _containers.RepeatedCompositeFieldContainer[RoomAppendResult]
    def __init__(self, rooms: _Optional[_Iterable[_Union[RoomAppendResult, _Mapping]]] = ...) -> None: ...

class RoomVote(_message.Message):
    __slots__ = ("room", "epoch", "last_index", "last_epoch", "pre", "transfer")
    ROOM_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    LAST_INDEX_FIELD_NUMBER: _ClassVar[int]
    LAST_EPOCH_FIELD_NUMBER: _ClassVar[int]
    PRE_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_FIELD_NUMBER: _ClassVar[int]
    room: str
    epoch: int
    last_index: int
    last_epoch: int
    pre: bool
    transfer: bool
    def __init__(self, room: _Optional[str] = ..., epoch: _Optional[int] = ..., last_index: _Optional[int] = ..., last_epoch: _Optional[int] = ..., pre: _Optional[bool] = ..., transfer: _Optional[bool] = ...) -> None: ...

class RequestVoteRequest(_message.Message):
    __slots__ = ("candidate", "rooms")
    CANDIDATE_FIELD_NUMBER: _ClassVar[int]
    ROOMS_FIELD_NUMBER: _ClassVar[int]
    candidate: str
    rooms: _containers.RepeatedCompositeFieldContainer[RoomVote]
    def __init__(self, candidate: _Optional[str] = ..., rooms: _Optional[_Iterable[_Union[RoomVote, _Mapping]]] = ...) -> None: ...

class RoomVoteResult(_message.Message):
    __slots__ = ("room", "epoch", "granted", "pre")
    ROOM_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    GRANTED_FIELD_NUMBER: _ClassVar[int]
    PRE_FIELD_NUMBER: _ClassVar[int]
    room: str
    epoch: int
    granted: bool
    pre: bool
    def __init__(self, room: _Optional[str] = ..., epoch: _Optional[int] = ..., granted: _Optional[bool] = ..., pre: _Optional[bool] = ...) -> None: ...

class RequestVoteResponse(_message.Message):
    __slots__ = ("rooms",)
    ROOMS_FIELD_NUMBER: _ClassVar[int]
    rooms: _containers.RepeatedCompositeFieldContainer[RoomVoteResult]
    def __init__(self, rooms: _Optional[_Iterable[_Union[RoomVoteResult, _Mapping]]] = ...) -> None: ...

class LocateRoomRequest(_message.Message):
    __slots__ = ("room",)
    ROOM_FIELD_NUMBER: _ClassVar[int]
    room: str
    def __init__(self, room: _Optional[str] = ...) -> None: ...

class LocateRoomResponse(_message.Message):
    __slots__ = ("known", "administrator", "replicas")
    KNOWN_FIELD_NUMBER: _ClassVar[int]
    ADMINISTRATOR_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    known: bool
    administrator: str
    replicas: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, known: _Optional[bool] = ..., administrator: _Optional[str] = ..., replicas: _Optional[_Iterable[str]] = ...) -> None: ...
