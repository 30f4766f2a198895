"""JoinRooms: a gateway's joins in one call, each answered as if alone."""

from __future__ import annotations

import grpc
from parley._generated import room_service_pb2 as pb
from parley._generated import room_service_pb2_grpc as pb_grpc
from support.cluster import LocalCluster


async def _create(cluster: LocalCluster, room: str, owner: str) -> str:
    """Create the room on its administrator (following the hint); its node id."""
    node = "node-0"
    for _ in range(3):
        async with grpc.aio.insecure_channel(cluster.node_addr(node)) as channel:
            try:
                await pb_grpc.RoomServiceStub(channel).CreateRoom(
                    pb.CreateRoomRequest(room=room, user=owner), timeout=10
                )
                return node
            except grpc.aio.AioRpcError as err:
                hint = dict(err.trailing_metadata() or ()).get("parley-administrator")
                if not hint:
                    raise
                node = str(hint)
    raise AssertionError("no administrator took the create")


async def test_a_batch_of_joins_is_answered_item_by_item(cluster: LocalCluster) -> None:
    admin = await _create(cluster, "r", "alice")
    joins = [
        ("r", "bob"),
        ("r", "carol"),
        ("r", "bob"),  # twice in one batch: one join entry
        ("r", "alice"),  # the owner, a member already
        ("nope", "bob"),
        ("r", "Not A Name"),
    ]
    request = pb.JoinRoomsRequest(joins=[pb.JoinRoomRequest(room=r, user=u) for r, u in joins])
    async with grpc.aio.insecure_channel(cluster.node_addr(admin)) as channel:
        response = await pb_grpc.RoomServiceStub(channel).JoinRooms(request, timeout=10)
    results = list(response.results)
    assert [r.error_code for r in results] == ["", "", "", "", "not_found", "bad_request"]
    answered = [r.joined for r in results[:4]]
    assert [a.already_member for a in answered] == [False, False, True, True]
    # the room as it stands after the batch: create (0), bob (1), carol (2)
    assert {a.last_seq for a in answered} == {2}
    assert all(list(a.members) == ["alice", "bob", "carol"] for a in answered)

    others = [n for n in ("node-0", "node-1", "node-2") if n != admin]
    async with grpc.aio.insecure_channel(cluster.node_addr(others[0])) as channel:
        elsewhere = await pb_grpc.RoomServiceStub(channel).JoinRooms(
            pb.JoinRoomsRequest(joins=[pb.JoinRoomRequest(room="r", user="dave")]), timeout=10
        )
    (result,) = elsewhere.results
    assert result.error_code == "not_administrator"
    assert result.administrator == admin
