"""Nodes check names themselves: whoever reaches a node's port speaks to it directly."""

from __future__ import annotations

import grpc
import pytest
from parley._generated import room_service_pb2 as pb
from parley._generated import room_service_pb2_grpc as pb_grpc
from support.cluster import LocalCluster


@pytest.mark.parametrize(
    ("room", "user"),
    [("../../ETC passwd", "mallory"), ("ok-room", "Mallory With Spaces!"), ("", "alice")],
)
async def test_a_node_refuses_bad_names_sent_straight_to_it(
    cluster: LocalCluster, room: str, user: str
) -> None:
    async with grpc.aio.insecure_channel(cluster.node_addr("node-0")) as channel:
        stub = pb_grpc.RoomServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.CreateRoom(pb.CreateRoomRequest(room=room, user=user), timeout=5)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        trailers = dict(refused.value.trailing_metadata() or ())
        assert trailers.get("parley-code") == "bad_request"
        with pytest.raises(grpc.aio.AioRpcError) as also:
            await stub.Publish(
                pb.PublishRequest(room=room, user=user, text="x", client_msg_id="m"), timeout=5
            )
        assert also.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        # nothing was created: a valid request for that name finds nothing
        listed = await stub.ListRooms(pb.ListRoomsRequest(), timeout=5)
        assert [r.room for r in listed.rooms] == []


async def test_a_node_refuses_to_publish_what_is_not_published(cluster: LocalCluster) -> None:
    """Only messages, edits, unsends, reactions and reads go through Publish:
    a join, a create or a kind that does not exist is a bad request."""
    async with grpc.aio.insecure_channel(cluster.node_addr("node-0")) as channel:
        stub = pb_grpc.RoomServiceStub(channel)
        for kind in (pb.ENTRY_KIND_JOIN, pb.ENTRY_KIND_CREATE, 99):
            request = pb.PublishRequest(
                room="r",
                user="mallory",
                text="x",
                client_msg_id="m",
                kind=kind,  # type: ignore[arg-type]
            )
            response = await stub.PublishBatch(
                pb.PublishBatchRequest(publishes=[request]), timeout=5
            )
            assert [r.error_code for r in response.results] == ["bad_request"]
