"""Join batching: concurrent joins to one node travel in one JoinRooms call.

A reconnect storm is thousands of joins at once; one call each made the
node spend its core on call overhead, the queue outgrow the attempt timeout
and the retries add to it (10,000 clients over 100 rooms: 8 in 10 joins
failed). Joins are idempotent, so a batch that failed is simply retried.
"""

from __future__ import annotations

import grpc

from parley._generated import room_service_pb2 as pb
from parley.gateway.batching import BATCH_TIMEOUT, Batcher, Pending
from parley.gateway.errors import classify
from parley.gateway.router import DEFAULT_DEADLINE, Router, relay_metadata, relaying
from parley.observability import tracing
from parley.observability.log import get_logger

log = get_logger(__name__)


class JoinBatcher(Batcher[pb.JoinRoomRequest, pb.JoinRoomResult]):
    """Joins for one node, in JoinRooms calls."""

    def __init__(self, router: Router, node_id: str) -> None:
        super().__init__(node_id)
        self._router = router

    async def _call(
        self, batch: list[Pending[pb.JoinRoomRequest, pb.JoinRoomResult]]
    ) -> list[pb.JoinRoomResult]:
        stub = self._router.stub(self.node_id)
        carriers = (p.carrier for p in batch)
        with tracing.span_for_batch("gateway.join_batch", carriers, node=self.node_id):
            response = await stub.JoinRooms(
                pb.JoinRoomsRequest(joins=[p.item for p in batch]),
                timeout=BATCH_TIMEOUT,
                metadata=tracing.inject_metadata(),
            )
        return list(response.results)


class Joiner:
    """Joins users to rooms through per-node batchers, re-routing items individually."""

    def __init__(self, router: Router) -> None:
        self._router = router
        self._batchers: dict[str, JoinBatcher] = {}
        self._unbatched: set[str] = set()
        """Nodes that said they have no JoinRooms (a rolling upgrade)."""

    async def join(
        self, room: str, user: str, *, deadline: float = DEFAULT_DEADLINE
    ) -> pb.JoinRoomResponse:
        """Make `user` a member of `room` (nothing is appended if they are one).

        Raises:
            ProtocolError: the client error (not_found, unavailable...).
        """
        request = pb.JoinRoomRequest(room=room, user=user)

        async def attempt(node_id: str, budget: float) -> pb.JoinRoomResponse:
            # (a relaying node passes on single calls only)
            if relaying() or node_id in self._unbatched:
                stub = self._router.stub(node_id)
                return await stub.JoinRoom(request, timeout=budget, metadata=relay_metadata())
            try:
                result = await self._batcher(node_id).submit(request)
            except grpc.aio.AioRpcError as error:
                if error.code() is not grpc.StatusCode.UNIMPLEMENTED:
                    raise
                if node_id not in self._unbatched:
                    log.info("node has no JoinRooms; using JoinRoom", node=node_id)
                    self._unbatched.add(node_id)
                return await self._router.stub(node_id).JoinRoom(request, timeout=budget)
            if result.error_code:
                raise classify(result.error_code, result.error_message, result.administrator)
            return result.joined

        return await self._router.call(room, attempt, deadline=deadline)

    async def close(self) -> None:
        """Stop every batcher."""
        for batcher in self._batchers.values():
            await batcher.close()
        self._batchers.clear()

    def _batcher(self, node_id: str) -> JoinBatcher:
        batcher = self._batchers.get(node_id)
        if batcher is None:
            batcher = self._batchers[node_id] = JoinBatcher(self._router, node_id)
        return batcher
