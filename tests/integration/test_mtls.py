"""mTLS between pods: nodes and gateways with certificates from the test's
CA chat as usual; a peer without one, or with one from another CA, is
refused; certificates rotate without a restart."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from parley._generated import room_service_pb2 as pb
from parley._generated import room_service_pb2_grpc as pb_grpc
from parley.supervisor import http_ready
from support.certs import Authority, Issued, write_tls
from support.client import ChatClient
from support.cluster import LocalCluster
from support.wait import wait_for

SERVER_NAME = "parley-node"

pytestmark = pytest.mark.timeout(180)


def _options() -> list[tuple[str, str]]:
    return [("grpc.ssl_target_name_override", SERVER_NAME)]


async def _health(address: str, credentials: grpc.ChannelCredentials | None) -> bool:
    """True when the node answers SERVING over these credentials (None: plaintext)."""
    channel = (
        grpc.aio.insecure_channel(address)
        if credentials is None
        else grpc.aio.secure_channel(address, credentials, options=_options())
    )
    async with channel:
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=2
            )
        except grpc.aio.AioRpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def _credentials(ca: Authority, client: Issued | None) -> grpc.ChannelCredentials:
    if client is None:
        return grpc.ssl_channel_credentials(root_certificates=ca.pem)
    return grpc.ssl_channel_credentials(
        root_certificates=ca.pem, private_key=client.key, certificate_chain=client.cert
    )


async def _start(
    make_cluster: Callable[..., Awaitable[LocalCluster]], tmp_path: Path, ca: Authority
) -> tuple[LocalCluster, dict[str, Path]]:
    files = write_tls(tmp_path / "tls", ca.issue(SERVER_NAME), ca)
    flags = ["--tls-cert", str(files["cert"]), "--tls-key", str(files["key"]),
             "--tls-ca", str(files["ca"]), "--tls-server-name", SERVER_NAME]  # fmt: skip
    good = _credentials(ca, ca.issue("prober"))

    async def probe(role: str, address: str) -> bool:
        if role == "node":
            return await _health(address, good)
        return await http_ready(address, seconds=1.0)

    cluster = await make_cluster(node_args=flags, gateway_args=flags, probe=probe)
    return cluster, files


async def _chat(cluster: LocalCluster, room: str) -> None:
    async with (
        await ChatClient.connect(cluster.gateway_url(0), "alice") as alice,
        await ChatClient.connect(cluster.gateway_url(0), "bob") as bob,
    ):
        assert (await alice.create(room))["type"] == "created"
        await alice.join(room)
        await bob.join(room)
        ack = await alice.send(room, "over mTLS")
        assert ack["type"] == "ack"
        await bob.wait_deliveries(room, ack["seq"])


async def test_pods_talk_over_mtls_and_refuse_strangers(
    make_cluster: Callable[..., Awaitable[LocalCluster]], tmp_path: Path
) -> None:
    ca = Authority("parley-test-ca")
    cluster, _ = await _start(make_cluster, tmp_path, ca)
    await _chat(cluster, "secure")  # gateway -> nodes and node <-> node, all over mTLS
    address = cluster.node_addr("node-0")
    assert await _health(address, _credentials(ca, ca.issue("friend")))
    # no TLS at all
    assert not await _health(address, None)
    # TLS, but no client certificate
    assert not await _health(address, _credentials(ca, None))
    # a certificate from another CA
    other = Authority("mallory-ca")
    assert not await _health(address, _credentials(ca, other.issue(SERVER_NAME)))
    # and the refused caller changed nothing
    async with grpc.aio.insecure_channel(address) as channel:
        with pytest.raises(grpc.aio.AioRpcError):
            await pb_grpc.RoomServiceStub(channel).CreateRoom(
                pb.CreateRoomRequest(room="stolen", user="mallory"), timeout=2
            )
    async with await ChatClient.connect(cluster.gateway_url(0), "alice") as alice:
        rooms = await alice.rooms()
        assert [r["room"] for r in rooms["rooms"]] == ["secure"]


async def test_certificates_rotate_without_a_restart(
    make_cluster: Callable[..., Awaitable[LocalCluster]], tmp_path: Path
) -> None:
    """Move every process from CA 1 to CA 2 by rewriting its files: first the
    bundle trusts both and the certificates come from CA 2, then CA 1 goes."""
    first = Authority("ca-1")
    cluster, files = await _start(make_cluster, tmp_path, first)
    await _chat(cluster, "before")
    second = Authority("ca-2")
    write_tls(files["cert"].parent, second.issue(SERVER_NAME), first, second)
    address = cluster.node_addr("node-1")
    from_second = _credentials(second, second.issue("newcomer"))
    await wait_for(lambda: _health(address, from_second), 20,
                   message="a node trusts CA 2 and shows its CA-2 certificate")  # fmt: skip
    await _chat(cluster, "during")
    write_tls(files["cert"].parent, second.issue(SERVER_NAME), second)
    from_first = _credentials(second, first.issue("old-timer"))
    await wait_for(lambda: _not(_health(address, from_first)), 20,
                   message="CA 1 certificates refused")  # fmt: skip
    await _chat(cluster, "after")
    for name in cluster.node_ids:
        assert cluster.procs[name].popen is not None and cluster.procs[name].popen.poll() is None


async def _not(check: Awaitable[bool]) -> bool:
    return not await check
