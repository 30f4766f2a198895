"""The gateway's typed client of RoomService: one method per RPC.

Every call is routed to the room's administrator by `Router.call` (hints,
backoff, relaying); the answers come back as their protobuf types.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from parley._generated import room_service_pb2 as pb
from parley.gateway.router import ATTEMPT_TIMEOUT, DEFAULT_DEADLINE, Router, relay_metadata

if TYPE_CHECKING:
    import grpc.aio

    from parley._generated.room_service_pb2_grpc import RoomServiceAsyncStub

TYPING_DEADLINE = 2.0
"""Typing is shown for a few seconds: later than this it is not worth passing on."""

Req = TypeVar("Req")
Resp = TypeVar("Resp")


class RoomClient:
    """RoomService on whichever node administers each room."""

    def __init__(self, router: Router) -> None:
        self._router = router

    async def _routed(
        self,
        room: str,
        method: Callable[[RoomServiceAsyncStub], grpc.aio.UnaryUnaryMultiCallable[Req, Resp]],
        request: Req,
        deadline: float = DEFAULT_DEADLINE,
    ) -> Resp:
        async def attempt(node: str, budget: float) -> Resp:
            call = method(self._router.stub(node))
            return await call(request, timeout=budget, metadata=relay_metadata())

        return await self._router.call(room, attempt, deadline=deadline)

    async def create_room(
        self,
        room: str,
        user: str,
        retain_entries: int = 0,
        retain_seconds: int = 0,
        *,
        private: bool = False,
        dm: tuple[str, str] | None = None,
    ) -> pb.CreateRoomResponse:
        request = pb.CreateRoomRequest(
            room=room,
            user=user,
            retain_entries=retain_entries,
            retain_seconds=retain_seconds,
            private=private,
            dm=dm or (),
        )
        return await self._routed(room, lambda stub: stub.CreateRoom, request)

    async def invite(self, room: str, user: str, invitee: str) -> pb.InviteResponse:
        request = pb.InviteRequest(room=room, user=user, invitee=invitee)
        return await self._routed(room, lambda stub: stub.Invite, request)

    async def typing(self, room: str, user: str) -> pb.TypingResponse:
        request = pb.TypingRequest(room=room, user=user)
        return await self._routed(room, lambda stub: stub.Typing, request, TYPING_DEADLINE)

    async def leave_room(self, room: str, user: str) -> pb.LeaveRoomResponse:
        request = pb.LeaveRoomRequest(room=room, user=user)
        return await self._routed(room, lambda stub: stub.LeaveRoom, request)

    async def delete_room(self, room: str, user: str) -> pb.DeleteRoomResponse:
        request = pb.DeleteRoomRequest(room=room, user=user)
        return await self._routed(room, lambda stub: stub.DeleteRoom, request)

    async def history(
        self, room: str, user: str, before_seq: int, limit: int
    ) -> pb.HistoryResponse:
        request = pb.HistoryRequest(room=room, user=user, before_seq=before_seq, limit=limit)
        return await self._routed(room, lambda stub: stub.History, request)

    async def members(self, room: str, user: str = "") -> pb.MembersResponse:
        request = pb.MembersRequest(room=room, user=user)
        return await self._routed(room, lambda stub: stub.Members, request)

    async def update_presence(
        self, request: pb.UpdatePresenceRequest, deadline: float = DEFAULT_DEADLINE
    ) -> pb.UpdatePresenceResponse:
        return await self._routed(request.room, lambda stub: stub.UpdatePresence, request, deadline)

    async def list_rooms(
        self, node: str, timeout: float = ATTEMPT_TIMEOUT, user: str = ""
    ) -> pb.ListRoomsResponse:
        """The rooms one node administers (not routed: the caller asks every node).

        Waits for a connecting channel within `timeout`: right after start-up
        a node may administer rooms before this gateway's channel is ready.
        """
        stub = self._router.stub(node)
        return await stub.ListRooms(
            pb.ListRoomsRequest(user=user), timeout=timeout, wait_for_ready=True
        )
