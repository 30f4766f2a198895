"""Relaying room calls to the administrator for a gateway that cannot reach it.

A gateway cut off from one node (the nodes still reach it, so nobody is
elected) asks another replica to pass its calls on, by sending
`parley-relay: 1`. The relayed call carries `parley-relayed: 1` and is never
relayed again, so two nodes that disagree about the administrator cannot
bounce a call between them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from functools import wraps
from typing import Any, TypeVar, cast

import grpc

from parley._generated import room_service_pb2_grpc as room_grpc
from parley.observability import tracing
from parley.room.errors import NotAdministrator

from .errors import Context

RELAY_KEY = "parley-relay"
RELAYED_KEY = "parley-relayed"
RELAY_TIMEOUT = 5.0
"""Seconds a relayed call may take; it waits for a (re)connecting channel meanwhile."""

# a string: the async stub class exists for type checkers only
StubFor = Callable[[str], "room_grpc.RoomServiceAsyncStub"]
Method = TypeVar("Method", bound=Callable[..., Awaitable[Any]])


def relay_requested(context: Context) -> bool:
    """True when the caller asked for relaying and this call is not a relay itself."""
    metadata = dict(context.invocation_metadata() or ())
    return metadata.get(RELAY_KEY) == "1" and RELAYED_KEY not in metadata


def relayed_metadata() -> tuple[tuple[str, str], ...]:
    """Metadata of a relayed call (with the trace context)."""
    return ((RELAYED_KEY, "1"), *tracing.inject_metadata())


def should_relay(err: NotAdministrator, self_id: str, up: set[str], context: Context) -> bool:
    """True when this node should pass the call on to err.hint: asked to, and
    its own failure detector sees the administrator up (relaying to a dead
    node would only hide the failure from the gateway's retries)."""
    return bool(err.hint) and err.hint != self_id and err.hint in up and relay_requested(context)


async def _abort_like(context: Context, err: grpc.aio.AioRpcError) -> None:
    """Answer with the administrator's own status and trailers."""
    # grpc-stubs types metadata items as objects; at run time they are pairs
    trailers = cast("Iterable[tuple[str, str | bytes]]", err.trailing_metadata() or ())
    context.set_trailing_metadata(tuple(trailers))
    await context.abort(err.code(), err.details() or "")


def relayable(method: Method) -> Method:
    """Pass a unary RoomService call on to the administrator when asked to.

    The servicer must have `core.node_id` and `room_stub(node_id)`.
    """

    @wraps(method)
    async def wrapper(self: Any, request: Any, context: Context) -> Any:
        try:
            return await method(self, request, context)
        except NotAdministrator as err:
            if not should_relay(err, self.core.node_id, self.core.up_nodes(), context):
                raise
            call = getattr(self.room_stub(err.hint), method.__name__)
            try:
                return await call(
                    request,
                    timeout=RELAY_TIMEOUT,
                    metadata=relayed_metadata(),
                    wait_for_ready=True,
                )
            except grpc.aio.AioRpcError as rpc_err:
                await _abort_like(context, rpc_err)

    return wrapper  # type: ignore[return-value]


async def relay_stream(
    stub: room_grpc.RoomServiceAsyncStub, request: Any, context: Context
) -> AsyncIterator[Any]:
    """Pass a Subscribe stream through from the administrator."""
    # no wait_for_ready: a stream has no deadline to bound the wait
    call = stub.Subscribe(request, metadata=relayed_metadata())
    try:
        async for item in call:
            yield item
    except grpc.aio.AioRpcError as err:
        await _abort_like(context, err)
    finally:
        call.cancel()
