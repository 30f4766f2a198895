"""One request and its answer at a time on a long-lived gRPC stream.

Gateway → node publishes (`PublishStream`) and node → node appends
(`AppendStream`) each keep one request in flight to a peer. A message on an
open bidirectional stream costs grpc.aio about half the CPU and round trip
of a unary call (docs/benchmarks.md), so both keep a stream open and
exchange on it. A stream that failed in any way — a late answer, a peer
gone, a channel the pool replaced — is dropped, never read again: a late
answer must not be taken for the next request's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

import grpc

Request = TypeVar("Request")
Response = TypeVar("Response")


class StreamLost(Exception):
    """The stream ended, or was cancelled, under a request."""


class RequestStream(Generic[Request, Response]):
    """A stream to one peer, opened on first use and after every failure.

    Args:
        answer: the response type (anything else read is the end of the stream).
    """

    def __init__(self, answer: type[Response]) -> None:
        self._answer = answer
        self._open: tuple[object, grpc.aio.StreamStreamCall[Request, Response]] | None = None

    async def exchange(
        self,
        on: object,
        opener: Callable[[], grpc.aio.StreamStreamCall[Request, Response]],
        request: Request,
        timeout: float,
    ) -> Response:
        """Send `request` and return its answer.

        Args:
            on: what the stream runs over (a channel, a stub): when it is not
                the open stream's, a new stream is opened with `opener`.
            timeout: seconds the request may wait for its answer.

        Raises:
            grpc.aio.AioRpcError: the call failed with a status.
            TimeoutError: no answer in time (the stream is dropped).
            StreamLost: the stream ended or was cancelled (dropped).
        """
        if self._open is None or self._open[0] is not on:
            self.drop()
            self._open = (on, opener())
        call = self._open[1]
        try:
            async with asyncio.timeout(timeout):
                await call.write(request)
                response = await call.read()
        except asyncio.InvalidStateError:
            # the call ended (the peer went away) before this write or read
            self.drop()
            raise StreamLost("the stream had ended") from None
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                self.drop()
                raise  # the caller is being cancelled
            # grpc.aio cancels the calls of a channel the pool replaced
            self.drop()
            raise StreamLost("the stream was cancelled") from None
        except BaseException:
            self.drop()
            raise
        if not isinstance(response, self._answer):  # grpc.aio.EOF
            self.drop()
            raise StreamLost("the peer ended the stream")
        return response

    def drop(self) -> None:
        """Cancel the open stream, if any; the next exchange opens another."""
        if self._open is not None:
            self._open[1].cancel()
            self._open = None
