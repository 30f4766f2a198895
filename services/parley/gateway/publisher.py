"""Publish batching: concurrent sends to one node travel in one PublishBatch call.

A gRPC call costs as much as ~40 WebSocket deliveries (DESIGN §5a), so one
call per message would cap the gateway far below its fan-out rate. Each node
gets a batcher: while one batch is in flight the next one accumulates, so the
batch size grows with the load and an idle gateway still sends at once.
"""

from __future__ import annotations

import asyncio

import grpc

from parley._generated import room_service_pb2 as pb
from parley.cluster.streams import RequestStream, StreamLost
from parley.gateway.errors import classify
from parley.gateway.router import DEFAULT_DEADLINE, RELAY_METADATA, Router, relaying
from parley.observability import tracing
from parley.observability.log import get_logger
from parley.room.errors import Unavailable

log = get_logger(__name__)

MAX_BATCH = 256
"""Most publishes in one PublishBatch call."""
BATCH_TIMEOUT = 3.0
"""Seconds one PublishBatch call may take before its items are retried."""


_Pending = tuple[pb.PublishRequest, "asyncio.Future[pb.PublishResult]", dict[str, str]]
"""A queued publish: the request, its caller's future, and its caller's trace carrier."""


class NodeBatcher:
    """Ships the publishes queued for one node in batches, one call in flight at a time."""

    def __init__(self, router: Router, node_id: str, relay: bool = False) -> None:
        self._router = router
        self._node_id = node_id
        # a relaying batcher asks its node to pass items on to their administrator
        self._metadata = RELAY_METADATA if relay else ()
        self._pending: list[_Pending] = []
        self._task: asyncio.Task[None] | None = None
        self._streaming = True
        """False once the node said it has no PublishStream (then PublishBatch)."""
        self._stream = RequestStream[pb.PublishBatchRequest, pb.PublishBatchResponse](
            pb.PublishBatchResponse
        )

    def submit(self, request: pb.PublishRequest) -> asyncio.Future[pb.PublishResult]:
        """Queue one publish; the future gets its PublishResult or the call's AioRpcError."""
        future: asyncio.Future[pb.PublishResult] = asyncio.get_running_loop().create_future()
        # The caller's span, so the batch call can continue its trace.
        self._pending.append((request, future, tracing.current_carrier()))
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"publish-{self._node_id}"
            )
        return future

    async def close(self) -> None:
        """Stop shipping; queued publishes fail with CancelledError."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._stream.drop()
        for _, future, _ in self._pending:
            future.cancel()
        self._pending.clear()

    async def _run(self) -> None:
        try:
            while self._pending:
                batch = self._pending[:MAX_BATCH]
                del self._pending[:MAX_BATCH]
                await self._ship(batch)
        finally:
            self._task = None

    async def _ship(self, batch: list[_Pending]) -> None:
        """One PublishBatch call; every future of the batch is resolved afterwards."""
        request = pb.PublishBatchRequest(publishes=[item for item, _, _ in batch])
        try:
            stub = self._router.stub(self._node_id)
            with tracing.span_for_batch(
                "gateway.publish_batch",
                (carrier for _, _, carrier in batch),
                node=self._node_id,
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
                    except grpc.aio.AioRpcError as error:
                        if error.code() is not grpc.StatusCode.UNIMPLEMENTED:
                            raise
                        # a node without PublishStream (a rolling upgrade):
                        # unary calls from now on, this batch's first
                        log.info(
                            "node has no PublishStream; using PublishBatch", node=self._node_id
                        )
                        self._streaming = False
                if response is None:
                    response = await stub.PublishBatch(
                        request,
                        timeout=BATCH_TIMEOUT,
                        metadata=(*self._metadata, *tracing.inject_metadata()),
                    )
        except Exception as error:
            # (a failed exchange has dropped its stream already)
            if isinstance(error, grpc.aio.AioRpcError):
                failure: Exception = error
            else:  # (a late answer, a replaced channel, a node gone: try again)
                if not isinstance(error, (KeyError, TimeoutError, StreamLost)):
                    log.error("publish batch failed", node=self._node_id, exc_info=True)
                failure = Unavailable(f"{self._node_id}: the publish stream failed")
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(failure)
            return
        results = list(response.results)
        if len(results) != len(batch):
            log.error(
                "PublishBatch answered the wrong number of results",
                node=self._node_id,
                sent=len(batch),
                got=len(results),
            )
            missing = pb.PublishResult(error_code="unavailable", error_message="no result")
            results += [missing] * (len(batch) - len(results))
        for (_, future, _), result in zip(batch, results, strict=False):
            if not future.done():
                future.set_result(result)


class Publisher:
    """Publishes messages through per-node batchers, re-routing items individually."""

    def __init__(self, router: Router) -> None:
        self._router = router
        self._batchers: dict[tuple[str, bool], NodeBatcher] = {}

    async def publish(
        self, room: str, user: str, client_msg_id: str, text: str,
        *, deadline: float = DEFAULT_DEADLINE,
    ) -> pb.PublishResult:  # fmt: skip
        """Order one message in its room.

        Safe to retry: the administrator de-duplicates on (user, client_msg_id).

        Returns:
            The successful result (seq, duplicate).

        Raises:
            ProtocolError: the client error (not_member, not_found, unavailable...).
        """
        request = pb.PublishRequest(room=room, user=user, client_msg_id=client_msg_id, text=text)

        async def attempt(node_id: str, _budget: float) -> pb.PublishResult:
            result = await self._batcher(node_id).submit(request)
            if result.error_code:
                raise classify(result.error_code, result.error_message, result.administrator)
            return result

        return await self._router.call(room, attempt, deadline=deadline)

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
