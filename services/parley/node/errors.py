"""The one mapping from domain errors (`parley.room.errors`) to gRPC statuses.

Every RoomService error carries trailing metadata `parley-code` (a client
error code of DESIGN §5, or `not_administrator`) and, for not_administrator,
`parley-administrator` naming the node to ask instead. Gateways map
`parley-code` back, and to client error frames, in one place too
(`parley.gateway.errors`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from functools import wraps
from typing import Any, TypeVar

import grpc

from parley.observability.log import get_logger
from parley.room.errors import (
    BadRequest,
    Forbidden,
    NotAdministrator,
    NotFound,
    NotMember,
    RoomError,
    RoomExists,
    TooLarge,
    Unavailable,
)

Context = grpc.aio.ServicerContext[Any, Any]
"""A servicer's call context (the generated stubs type requests per method)."""

CODE_KEY = "parley-code"
ADMINISTRATOR_KEY = "parley-administrator"

log = get_logger("parley.node")


STATUS: dict[str, grpc.StatusCode] = {
    BadRequest.code: grpc.StatusCode.INVALID_ARGUMENT,
    TooLarge.code: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound.code: grpc.StatusCode.NOT_FOUND,
    RoomExists.code: grpc.StatusCode.ALREADY_EXISTS,
    NotMember.code: grpc.StatusCode.FAILED_PRECONDITION,
    Forbidden.code: grpc.StatusCode.PERMISSION_DENIED,
    Unavailable.code: grpc.StatusCode.UNAVAILABLE,
    NotAdministrator.code: grpc.StatusCode.FAILED_PRECONDITION,
}
"""The gRPC status of each domain error code (internal for anything else)."""


def status_of(err: RoomError) -> grpc.StatusCode:
    return STATUS.get(err.code, grpc.StatusCode.INTERNAL)


def trailers_of(err: RoomError) -> tuple[tuple[str, str], ...]:
    """Trailing metadata that tells the gateway what happened."""
    if isinstance(err, NotAdministrator):
        return ((CODE_KEY, err.code), (ADMINISTRATOR_KEY, err.hint))
    return ((CODE_KEY, err.code),)


Method = TypeVar("Method", bound=Callable[..., Awaitable[Any]])


async def _abort(context: Context, err: BaseException) -> None:
    if isinstance(err, RoomError):
        context.set_trailing_metadata(trailers_of(err))
        await context.abort(status_of(err), err.message)
    log.error("rpc failed", exc_info=err)
    context.set_trailing_metadata(((CODE_KEY, "internal"),))
    await context.abort(grpc.StatusCode.INTERNAL, "internal error")


def rpc_boundary(method: Method) -> Method:
    """Turn RoomErrors into statuses and log anything unexpected, once per RPC."""

    @wraps(method)
    async def wrapper(self: Any, request: Any, context: Context) -> Any:
        try:
            return await method(self, request, context)
        except (RoomError, Exception) as err:
            if isinstance(err, grpc.aio.AbortError):
                raise
            await _abort(context, err)

    return wrapper  # type: ignore[return-value]


def stream_boundary(
    method: Callable[..., AsyncIterator[Any]],
) -> Callable[..., AsyncIterator[Any]]:
    """rpc_boundary for server-streaming methods."""

    @wraps(method)
    async def wrapper(self: Any, request: Any, context: Context) -> Any:
        try:
            async for item in method(self, request, context):
                yield item
        except (RoomError, Exception) as err:
            if isinstance(err, grpc.aio.AbortError):
                raise
            await _abort(context, err)

    return wrapper
