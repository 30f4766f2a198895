"""Publish batching: concurrent sends to one node travel in one batch, on
the node's PublishStream (batching.py says why)."""

from __future__ import annotations

import asyncio

import grpc

from parley._generated import room_service_pb2 as pb
from parley.cluster.streams import RequestStream, StreamLost
from parley.gateway.batching import BATCH_TIMEOUT, Batcher, Pending
from parley.gateway.errors import classify
from parley.gateway.router import DEFAULT_DEADLINE, RELAY_METADATA, Router, relaying
from parley.observability import tracing
from parley.observability.log import get_logger
from parley.room.errors import Unavailable

log = get_logger(__name__)


class NodeBatcher(Batcher[pb.PublishRequest, pb.PublishResult]):
    """Publishes for one node, on its PublishStream (PublishBatch calls for a
    node without one)."""

    def __init__(self, router: Router, node_id: str, relay: bool = False) -> None:
        super().__init__(node_id)
        self._router = router
        # a relaying batcher asks its node to pass items on to their administrator
        self._metadata = RELAY_METADATA if relay else ()
        self._streaming = True
        """False once the node said it has no PublishStream (then PublishBatch)."""
        self._stream = RequestStream[pb.PublishBatchRequest, pb.PublishBatchResponse](
            pb.PublishBatchResponse
        )

    async def close(self) -> None:
        await super().close()
        self._stream.drop()

    async def _call(
        self, batch: list[Pending[pb.PublishRequest, pb.PublishResult]]
    ) -> list[pb.PublishResult]:
        request = pb.PublishBatchRequest(publishes=[p.item for p in batch])
        stub = self._router.stub(self.node_id)
        with tracing.span_for_batch(
            "gateway.publish_batch",
            (p.carrier for p in batch),
            node=self.node_id,
            messages=len(batch),
        ):
            response = None
            if self._streaming:
                try:
                    request.traceparent = tracing.traceparent()
                    response = await self._stream.exchange(
                        stub,
                        # (no request iterator: batches go in with write())
                        lambda: stub.PublishStream(metadata=self._metadata),  # type: ignore[call-arg]
                        request,
                        BATCH_TIMEOUT,
                    )
                except StreamLost:
                    # (the failed exchange has dropped its stream already)
                    raise Unavailable(f"{self.node_id}: the publish stream failed") from None
                except grpc.aio.AioRpcError as error:
                    if error.code() is not grpc.StatusCode.UNIMPLEMENTED:
                        raise
                    # a node without PublishStream (a rolling upgrade):
                    # unary calls from now on, this batch's first
                    log.info("node has no PublishStream; using PublishBatch", node=self.node_id)
                    self._streaming = False
            if response is None:
                response = await stub.PublishBatch(
                    request,
                    timeout=BATCH_TIMEOUT,
                    metadata=(*self._metadata, *tracing.inject_metadata()),
                )
        return list(response.results)


class Publisher:
    """Publishes messages through per-node batchers, re-routing items individually."""

    def __init__(self, router: Router) -> None:
        self._router = router
        self._batchers: dict[tuple[str, bool], NodeBatcher] = {}

    async def publish(
        self, room: str, user: str, client_msg_id: str, text: str,
        *, kind: int = 0, target: int = 0, deadline: float = DEFAULT_DEADLINE,
    ) -> pb.PublishResult:  # fmt: skip
        """Order one message in its room, or (with `kind`) an edit, unsend or
        reaction of the message at seq `target`.

        Safe to retry: the administrator de-duplicates on (user, client_msg_id).

        Returns:
            The successful result (seq, duplicate).

        Raises:
            ProtocolError: the client error (not_member, not_found, unavailable...).
        """
        request = pb.PublishRequest(
            room=room, user=user, client_msg_id=client_msg_id, text=text,
            kind=kind,  # type: ignore[arg-type]
            target=target,
        )  # fmt: skip

        async def attempt(node_id: str, _budget: float) -> pb.PublishResult:
            result = await self._batcher(node_id).submit(request)
            if result.error_code:
                raise classify(result.error_code, result.error_message, result.administrator)
            return result

        return await self._router.call(room, attempt, deadline=deadline)

    def submit(
        self, node_id: str, room: str, user: str, client_msg_id: str, text: str
    ) -> asyncio.Future[pb.PublishResult]:
        """One message into `node_id`'s next batch, once, not retried (the
        send fast path, handlers.py): the future has the node's result, or
        the batch's failure."""
        request = pb.PublishRequest(room=room, user=user, client_msg_id=client_msg_id, text=text)
        return self._batcher(node_id).submit(request)

    async def close(self) -> None:
        """Stop every batcher."""
        batchers = list(self._batchers.values())
        self._batchers.clear()
        await asyncio.gather(*(b.close() for b in batchers))

    def _batcher(self, node_id: str) -> NodeBatcher:
        key = (node_id, relaying())
        batcher = self._batchers.get(key)
        if batcher is None:
            batcher = self._batchers[key] = NodeBatcher(self._router, node_id, key[1])
        return batcher
