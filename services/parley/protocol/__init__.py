"""Client JSON frames (DESIGN §5): parse and validate requests, encode replies.

Pure functions and dataclasses; nothing here touches a socket.
"""

from parley.protocol.errors import ErrorCode, ProtocolError
from parley.protocol.requests import (
    AnnotateRequest,
    CreateRequest,
    DeleteRequest,
    HistoryRequest,
    JoinRequest,
    LeaveRequest,
    MembersRequest,
    PingRequest,
    Request,
    RoomsRequest,
    SendRequest,
    parse_request,
)

__all__ = [
    "AnnotateRequest",
    "CreateRequest",
    "DeleteRequest",
    "ErrorCode",
    "HistoryRequest",
    "JoinRequest",
    "LeaveRequest",
    "MembersRequest",
    "PingRequest",
    "ProtocolError",
    "Request",
    "RoomsRequest",
    "SendRequest",
    "parse_request",
]
