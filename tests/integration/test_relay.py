"""A node that is not a room's administrator relays calls to it when asked."""

from __future__ import annotations

import urllib.request

import grpc
import pytest
from parley._generated import room_service_pb2 as pb
from parley._generated import room_service_pb2_grpc as room_grpc
from support.client import ChatClient
from support.cluster import LocalCluster
from support.wait import wait_for

RELAY = (("parley-relay", "1"),)
RELAYED = (("parley-relay", "1"), ("parley-relayed", "1"))


async def _room_with_a_follower(cluster: LocalCluster) -> tuple[str, str]:
    """Create room "relay" with one message; return (administrator, a follower)."""
    async with await ChatClient.connect(cluster.gateway_url(), "alice") as alice:
        await alice.create("relay")
        ack = await alice.send("relay", "first", msg_id="m1")
        assert ack["type"] == "ack", ack
        listing = await alice.rooms()
    admin = next(r["administrator"] for r in listing["rooms"] if r["room"] == "relay")
    follower = next(n for n in cluster.node_ids if n != admin)
    # a node relays only to an administrator its own health watch sees up
    await wait_for(
        lambda: _sees_up(cluster, follower, admin), 10, message=f"{follower} sees {admin} up"
    )
    return admin, follower


def _sees_up(cluster: LocalCluster, node_id: str, peer: str) -> bool:
    """parley_peer_up{peer=...} is 1 on node_id."""
    url = f"http://{cluster.node_http(node_id)}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return f'parley_peer_up{{peer="{peer}"}} 1.0' in text


async def test_follower_relays_publish_batch_and_unary_calls(cluster: LocalCluster) -> None:
    """With parley-relay a follower passes PublishBatch and History on to the administrator;
    without it, or on an already relayed call, it answers not_administrator."""
    admin, follower = await _room_with_a_follower(cluster)
    async with grpc.aio.insecure_channel(cluster.node_addr(follower)) as channel:
        stub = room_grpc.RoomServiceStub(channel)
        batch = pb.PublishBatchRequest(
            publishes=[pb.PublishRequest(room="relay", user="alice", client_msg_id="m2", text="x")]
        )
        plain = await stub.PublishBatch(batch)
        assert plain.results[0].error_code == "not_administrator"
        assert plain.results[0].administrator == admin
        relayed = await stub.PublishBatch(batch, metadata=RELAY)
        assert relayed.results[0].error_code == "" and relayed.results[0].seq == 2
        again = await stub.PublishBatch(batch, metadata=RELAY)
        assert again.results[0].seq == 2 and again.results[0].duplicate
        no_second_hop = await stub.PublishBatch(batch, metadata=RELAYED)
        assert no_second_hop.results[0].error_code == "not_administrator"

        history = await stub.History(
            pb.HistoryRequest(room="relay", user="alice", limit=10), metadata=RELAY
        )
        assert [(e.seq, e.text) for e in history.entries] == [(0, ""), (1, "first"), (2, "x")]
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.History(pb.HistoryRequest(room="relay", user="alice", limit=10))
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        trailers = dict(refused.value.trailing_metadata() or ())
        assert trailers.get("parley-administrator") == admin
        with pytest.raises(grpc.aio.AioRpcError) as not_member:
            await stub.History(pb.HistoryRequest(room="relay", user="mallory"), metadata=RELAY)
        # the administrator's own error comes back through the relay
        assert dict(not_member.value.trailing_metadata() or ()).get("parley-code") == ("not_member")


async def test_follower_relays_a_subscribe_stream(cluster: LocalCluster) -> None:
    """A relayed Subscribe streams the administrator's committed entries from from_seq."""
    _, follower = await _room_with_a_follower(cluster)
    async with grpc.aio.insecure_channel(cluster.node_addr(follower)) as channel:
        stub = room_grpc.RoomServiceStub(channel)
        call = stub.Subscribe(
            pb.SubscribeRequest(room="relay", from_seq=1, gateway_id="test"), metadata=RELAY
        )
        try:
            first = await call.read()
            assert [e.text for e in first.entries] == ["first"]
        finally:
            call.cancel()
