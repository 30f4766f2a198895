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


async def test_a_node_checks_texts_and_ids_as_the_gateway_does(cluster: LocalCluster) -> None:
    """Oversized or empty texts and overlong ids sent straight to a node are
    refused with the gateway's codes, and the room is unchanged."""
    async with grpc.aio.insecure_channel(cluster.node_addr("node-0")) as channel:
        stub = pb_grpc.RoomServiceStub(channel)
        await stub.CreateRoom(pb.CreateRoomRequest(room="r", user="alice"), timeout=10)
        bad = [
            (pb.PublishRequest(room="r", user="alice", text="x" * 4001, client_msg_id="a"),
             "too_large"),
            (pb.PublishRequest(room="r", user="alice", text="", client_msg_id="b"), "bad_request"),
            (pb.PublishRequest(room="r", user="alice", text="hi", client_msg_id="i" * 129),
             "bad_request"),
            (pb.PublishRequest(room="r", user="alice", text="", client_msg_id="c", target=1,
                               kind=pb.ENTRY_KIND_EDIT), "bad_request"),
        ]  # fmt: skip
        response = await stub.PublishBatch(
            pb.PublishBatchRequest(publishes=[request for request, _ in bad]), timeout=10
        )
        assert [r.error_code for r in response.results] == [code for _, code in bad]
        history = await stub.History(pb.HistoryRequest(room="r", user="alice"), timeout=10)
        assert [e.kind for e in history.entries] == [pb.ENTRY_KIND_CREATE]
