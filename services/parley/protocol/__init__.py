"""Client JSON frames (DESIGN §5): parse and validate requests, encode replies.

Pure functions and dataclasses; nothing here touches a socket.
"""

from parley.protocol.errors import ErrorCode, ProtocolError
from parley.protocol.requests import (
    AnnotateRequest,
    AuthRequest,
    CreateRequest,
    DeleteRequest,
    DmRequest,
    FrameLimits,
    HistoryRequest,
    InviteRequest,
    JoinRequest,
    LeaveRequest,
    MembersRequest,
    PingRequest,
    ReadRequest,
    Request,
    RoomsRequest,
    SendRequest,
    TypingRequest,
    parse_request,
)

__all__ = [
    "AnnotateRequest",
    "AuthRequest",
    "CreateRequest",
    "DeleteRequest",
    "DmRequest",
    "ErrorCode",
    "FrameLimits",
    "HistoryRequest",
    "InviteRequest",
    "JoinRequest",
    "LeaveRequest",
    "MembersRequest",
    "PingRequest",
    "ProtocolError",
    "ReadRequest",
    "Request",
    "RoomsRequest",
    "SendRequest",
    "TypingRequest",
    "parse_request",
]
