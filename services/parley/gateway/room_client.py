"""The gateway's typed client of RoomService: one method per RPC.

Every call is routed to the room's administrator by `Router.call` (hints,
backoff, relaying); the answers come back as their protobuf types.
"""

from __future__ import annotations

from parley._generated import room_service_pb2 as pb
from parley._generated import room_service_pb2_grpc as pb_grpc
from parley.gateway.router import ATTEMPT_TIMEOUT, DEFAULT_DEADLINE, Router, relay_metadata


class RoomClient:
    """RoomService on whichever node administers each room."""

    def __init__(self, router: Router) -> None:
        self._router = router

    async def create_room(self, room: str, user: str) -> pb.CreateRoomResponse:
        async def attempt(node: str, budget: float) -> pb.CreateRoomResponse:
            request = pb.CreateRoomRequest(room=room, user=user)
            return await self._stub(node).CreateRoom(
                request, timeout=budget, metadata=relay_metadata()
            )

        return await self._router.call(room, attempt)

    async def join_room(self, room: str, user: str) -> pb.JoinRoomResponse:
        async def attempt(node: str, budget: float) -> pb.JoinRoomResponse:
            request = pb.JoinRoomRequest(room=room, user=user)
            return await self._stub(node).JoinRoom(
                request, timeout=budget, metadata=relay_metadata()
            )

        return await self._router.call(room, attempt)

    async def leave_room(self, room: str, user: str) -> pb.LeaveRoomResponse:
        async def attempt(node: str, budget: float) -> pb.LeaveRoomResponse:
            request = pb.LeaveRoomRequest(room=room, user=user)
            return await self._stub(node).LeaveRoom(
                request, timeout=budget, metadata=relay_metadata()
            )

        return await self._router.call(room, attempt)

    async def delete_room(self, room: str, user: str) -> pb.DeleteRoomResponse:
        async def attempt(node: str, budget: float) -> pb.DeleteRoomResponse:
            request = pb.DeleteRoomRequest(room=room, user=user)
            return await self._stub(node).DeleteRoom(
                request, timeout=budget, metadata=relay_metadata()
            )

        return await self._router.call(room, attempt)

    async def history(
        self, room: str, user: str, before_seq: int, limit: int
    ) -> pb.HistoryResponse:
        async def attempt(node: str, budget: float) -> pb.HistoryResponse:
            request = pb.HistoryRequest(room=room, user=user, before_seq=before_seq, limit=limit)
            return await self._stub(node).History(
                request, timeout=budget, metadata=relay_metadata()
            )

        return await self._router.call(room, attempt)

    async def members(self, room: str) -> pb.MembersResponse:
        async def attempt(node: str, budget: float) -> pb.MembersResponse:
            request = pb.MembersRequest(room=room)
            return await self._stub(node).Members(
                request, timeout=budget, metadata=relay_metadata()
            )

        return await self._router.call(room, attempt)

    async def update_presence(
        self, request: pb.UpdatePresenceRequest, deadline: float = DEFAULT_DEADLINE
    ) -> pb.UpdatePresenceResponse:
        async def attempt(node: str, budget: float) -> pb.UpdatePresenceResponse:
            return await self._stub(node).UpdatePresence(
                request, timeout=budget, metadata=relay_metadata()
            )

        return await self._router.call(request.room, attempt, deadline=deadline)

    async def list_rooms(self, node: str, timeout: float = ATTEMPT_TIMEOUT) -> pb.ListRoomsResponse:
        """The rooms one node administers (not routed: the caller asks every node)."""
        return await self._stub(node).ListRooms(pb.ListRoomsRequest(), timeout=timeout)

    def _stub(self, node: str) -> pb_grpc.RoomServiceAsyncStub:
        return self._router.stub(node)
