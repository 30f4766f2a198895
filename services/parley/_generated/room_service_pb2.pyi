from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EntryKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENTRY_KIND_UNSPECIFIED: _ClassVar[EntryKind]
    ENTRY_KIND_CREATE: _ClassVar[EntryKind]
    ENTRY_KIND_MESSAGE: _ClassVar[EntryKind]
    ENTRY_KIND_JOIN: _ClassVar[EntryKind]
    ENTRY_KIND_LEAVE: _ClassVar[EntryKind]
    ENTRY_KIND_DELETE: _ClassVar[EntryKind]
    ENTRY_KIND_EPOCH: _ClassVar[EntryKind]
ENTRY_KIND_UNSPECIFIED: EntryKind
ENTRY_KIND_CREATE: EntryKind
ENTRY_KIND_MESSAGE: EntryKind
ENTRY_KIND_JOIN: EntryKind
ENTRY_KIND_LEAVE: EntryKind
ENTRY_KIND_DELETE: EntryKind
ENTRY_KIND_EPOCH: EntryKind

class Entry(_message.Message):
    __slots__ = ("seq", "kind", "user", "text", "ts_ms")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TS_MS_FIELD_NUMBER: _ClassVar[int]
    seq: int
    kind: EntryKind
    user: str
    text: str
    ts_ms: int
    def __init__(self, seq: _Optional[int] = ..., kind: _Optional[_Union[EntryKind, str]] = ..., user: _Optional[str] = ..., text: _Optional[str] = ..., ts_ms: _Optional[int] = ...) -> None: ...

class CreateRoomRequest(_message.Message):
    __slots__ = ("room", "user")
    ROOM_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    room: str
    user: str
    def __init__(self, room: _Optional[str] = ..., user: _Optional[str] = ...) -> None: ...

class CreateRoomResponse(_message.Message):
    __slots__ = ("owner", "seq")
    OWNER_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    owner: str
    seq: int
    def __init__(self, owner: _Optional[str] = ..., seq: _Optional[int] = ...) -> None: ...

class DeleteRoomRequest(_message.Message):
    __slots__ = ("room", "user")
    ROOM_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    room: str
    user: str
    def __init__(self, room: _Optional[str] = ..., user: _Optional[str] = ...) -> None: ...

class DeleteRoomResponse(_message.Message):
    __slots__ = ("seq",)
    SEQ_FIELD_NUMBER: _ClassVar[int]
    seq: int
    def __init__(self, seq: _Optional[int] = ...) -> None: ...

class JoinRoomRequest(_message.Message):
    __slots__ = ("room", "user")
    ROOM_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    room: str
    user: str
    def __init__(self, room: _Optional[str] = ..., user: _Optional[str] = ...) -> None: ...

class JoinRoomResponse(_message.Message):
    __slots__ = ("last_seq", "members", "already_member")
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    ALREADY_MEMBER_FIELD_NUMBER: _ClassVar[int]
    last_seq: int
    members: _containers.RepeatedScalarFieldContainer[str]
    already_member: bool
    def __init__(self, last_seq: _Optional[int] = ..., members: _Optional[_Iterable[str]] = ..., already_member: _Optional[bool] = ...) -> None: ...

class LeaveRoomRequest(_message.Message):
    __slots__ = ("room", "user")
    ROOM_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    room: str
    user: str
    def __init__(self, room: _Optional[str] = ..., user: _Optional[str] = ...) -> None: ...

class LeaveRoomResponse(_message.Message):
    __slots__ = ("seq",)
    SEQ_FIELD_NUMBER: _ClassVar[int]
    seq: int
    def __init__(self, seq: _Optional[int] = ...) -> None: ...

class PublishRequest(_message.Message):
    __slots__ = ("room", "user", "client_msg_id", "text")
    ROOM_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    CLIENT_MSG_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    room: str
    user: str
    client_msg_id: str
    text: str
    def __init__(self, room: _Optional[str] = ..., user: _Optional[str] = ..., client_msg_id: _Optional[str] = ..., text: _Optional[str] = ...) -> None: ...

class PublishResponse(_message.Message):
    __slots__ = ("seq", "duplicate")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    seq: int
    duplicate: bool
    def __init__(self, seq: _Optional[int] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class PublishBatchRequest(_message.Message):
    __slots__ = ("publishes",)
    PUBLISHES_FIELD_NUMBER: _ClassVar[int]
    publishes: _containers.RepeatedCompositeFieldContainer[PublishRequest]
    def __init__(self, publishes: _Optional[_Iterable[_Union[PublishRequest, _Mapping]]] = ...) -> None: ...

class PublishResult(_message.Message):
    __slots__ = ("seq", "duplicate", "error_code", "error_message", "administrator")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ADMINISTRATOR_FIELD_NUMBER: _ClassVar[int]
    seq: int
    duplicate: bool
    error_code: str
    error_message: str
    administrator: str
    def __init__(self, seq: _Optional[int] = ..., duplicate: _Optional[bool] = ..., error_code: _Optional[str] = ..., error_message: _Optional[str] = ..., administrator: _Optional[str] = ...) -> None: ...

class PublishBatchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[PublishResult]
    def __init__(self, results: _Optional[_Iterable[_Union[PublishResult, _Mapping]]] = ...) -> None: ...

class HistoryRequest(_message.Message):
    __slots__ = ("room", "before_seq", "limit", "user")
    ROOM_FIELD_NUMBER: _ClassVar[int]
    BEFORE_SEQ_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    room: str
    before_seq: int
    limit: int
    user: str
    def __init__(self, room: _Optional[str] = ..., before_seq: _Optional[int] = ..., limit: _Optional[int] = ..., user: _Optional[str] = ...) -> None: ...

class HistoryResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[Entry]
    def __init__(self, entries: _Optional[_Iterable[_Union[Entry, _Mapping]]] = ...) -> None: ...

class ListRoomsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RoomInfo(_message.Message):
    __slots__ = ("room", "owner", "member_count", "last_seq", "administrator", "last_ts_ms")
    ROOM_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    MEMBER_COUNT_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    ADMINISTRATOR_FIELD_NUMBER: _ClassVar[int]
    LAST_TS_MS_FIELD_NUMBER: _ClassVar[int]
    room: str
    owner: str
    member_count: int
    last_seq: int
    administrator: str
    last_ts_ms: int
    def __init__(self, room: _Optional[str] = ..., owner: _Optional[str] = ..., member_count: _Optional[int] = ..., last_seq: _Optional[int] = ..., administrator: _Optional[str] = ..., last_ts_ms: _Optional[int] = ...) -> None: ...

class ListRoomsResponse(_message.Message):
    __slots__ = ("rooms",)
    ROOMS_FIELD_NUMBER: _ClassVar[int]
    rooms: _containers.RepeatedCompositeFieldContainer[RoomInfo]
    def __init__(self, rooms: _Optional[_Iterable[_Union[RoomInfo, _Mapping]]] = ...) -> None: ...

class MembersRequest(_message.Message):
    __slots__ = ("room",)
    ROOM_FIELD_NUMBER: _ClassVar[int]
    room: str
    def __init__(self, room: _Optional[str] = ...) -> None: ...

class Member(_message.Message):
    __slots__ = ("user", "online")
    USER_FIELD_NUMBER: _ClassVar[int]
    ONLINE_FIELD_NUMBER: _ClassVar[int]
    user: str
    online: bool
    def __init__(self, user: _Optional[str] = ..., online: _Optional[bool] = ...) -> None: ...

class MembersResponse(_message.Message):
    __slots__ = ("members",)
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    members: _containers.RepeatedCompositeFieldContainer[Member]
    def __init__(self, members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ...) -> None: ...

class PresenceChange(_message.Message):
    __slots__ = ("user", "online")
    USER_FIELD_NUMBER: _ClassVar[int]
    ONLINE_FIELD_NUMBER: _ClassVar[int]
    user: str
    online: bool
    def __init__(self, user: _Optional[str] = ..., online: _Optional[bool] = ...) -> None: ...

class UpdatePresenceRequest(_message.Message):
    __slots__ = ("room", "gateway_id", "changes")
    ROOM_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_ID_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    room: str
    gateway_id: str
    changes: _containers.RepeatedCompositeFieldContainer[PresenceChange]
    def __init__(self, room: _Optional[str] = ..., gateway_id: _Optional[str] = ..., changes: _Optional[_Iterable[_Union[PresenceChange, _Mapping]]] = ...) -> None: ...

class UpdatePresenceResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ("room", "from_seq", "gateway_id", "online_users")
    ROOM_FIELD_NUMBER: _ClassVar[int]
    FROM_SEQ_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_ID_FIELD_NUMBER: _ClassVar[int]
    ONLINE_USERS_FIELD_NUMBER: _ClassVar[int]
    room: str
    from_seq: int
    gateway_id: str
    online_users: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, room: _Optional[str] = ..., from_seq: _Optional[int] = ..., gateway_id: _Optional[str] = ..., online_users: _Optional[_Iterable[str]] = ...) -> None: ...

class PresenceEvent(_message.Message):
    __slots__ = ("user", "online")
    USER_FIELD_NUMBER: _ClassVar[int]
    ONLINE_FIELD_NUMBER: _ClassVar[int]
    user: str
    online: bool
    def __init__(self, user: _Optional[str] = ..., online: _Optional[bool] = ...) -> None: ...

class SubscribeResponse(_message.Message):
    __slots__ = ("entries", "presence")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    PRESENCE_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[Entry]
    presence: _containers.RepeatedCompositeFieldContainer[PresenceEvent]
    def __init__(self, entries: _Optional[_Iterable[_Union[Entry, _Mapping]]] = ..., presence: _Optional[_Iterable[_Union[PresenceEvent, _Mapping]]] = ...) -> None: ...
