"""Domain errors of a node and their one mapping to gRPC statuses.

Every RoomService error carries trailing metadata `parley-code` (a client
error code of DESIGN §5, or `not_administrator`) and, for not_administrator,
`parley-administrator` naming the node to ask instead. Gateways map
`parley-code` to client error frames in one place too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from functools import wraps
from typing import Any, TypeVar

import grpc

from parley.observability.log import get_logger

Context = grpc.aio.ServicerContext[Any, Any]
"""A servicer's call context (the generated stubs type requests per method)."""

CODE_KEY = "parley-code"
ADMINISTRATOR_KEY = "parley-administrator"

log = get_logger("parley.node")


class RoomError(Exception):
    """A request failed for a reason the client should hear about."""

    code = "internal"
    status = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def trailers(self) -> tuple[tuple[str, str], ...]:
        """Trailing metadata that tells the gateway what happened."""
        return ((CODE_KEY, self.code),)


class BadRequest(RoomError):
    code, status = "bad_request", grpc.StatusCode.INVALID_ARGUMENT


class NotFound(RoomError):
    code, status = "not_found", grpc.StatusCode.NOT_FOUND


class RoomExists(RoomError):
    code, status = "room_exists", grpc.StatusCode.ALREADY_EXISTS


class NotMember(RoomError):
    code, status = "not_member", grpc.StatusCode.FAILED_PRECONDITION


class Forbidden(RoomError):
    code, status = "forbidden", grpc.StatusCode.PERMISSION_DENIED


class Unavailable(RoomError):
    code, status = "unavailable", grpc.StatusCode.UNAVAILABLE


class NotAdministrator(RoomError):
    """This node does not administer the room; `hint` may name who does."""

    code, status = "not_administrator", grpc.StatusCode.FAILED_PRECONDITION

    def __init__(self, room: str, hint: str) -> None:
        where = f"ask {hint}" if hint else "administrator unknown"
        super().__init__(f"not the administrator of {room}: {where}")
        self.hint = hint

    def trailers(self) -> tuple[tuple[str, str], ...]:
        return ((CODE_KEY, self.code), (ADMINISTRATOR_KEY, self.hint))


Method = TypeVar("Method", bound=Callable[..., Awaitable[Any]])


async def _abort(context: Context, err: BaseException) -> None:
    if isinstance(err, RoomError):
        context.set_trailing_metadata(err.trailers())
        await context.abort(err.status, err.message)
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
