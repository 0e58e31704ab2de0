"""`MalformedRequests`: request bytes that do not parse are INVALID_ARGUMENT, not UNKNOWN.

``grpc.aio`` answers a request its deserializer cannot parse (a corrupt wire format, a string
field that is not UTF-8) with UNKNOWN and the parser's exception text, as if the server had
failed. This interceptor gives each method of one service a deserializer that returns a
``Malformed`` value instead of raising:

- a unary call that carries one is aborted with INVALID_ARGUMENT before the method runs;
- on a client stream (``IngestStream``, ``Converse``) the method reads it as the next
  message, and the first field it reads raises ``InvalidInput``: the servicer maps that to
  INVALID_ARGUMENT like any other bad field, and the stream ends there.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import grpc
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]  # no stubs

from indexer.errors import InvalidInput

# grpc ships no type hints: handlers, contexts and call details are Any here
Handler = Any


class Malformed:
    """Stands for a request message that did not parse; reading any field raises."""

    __slots__ = ("detail",)

    def __init__(self, detail: str) -> None:
        self.detail = detail

    def __getattr__(self, name: str) -> NoReturn:
        raise InvalidInput(self.detail)


def tolerant(deserialize: Callable[[bytes], object]) -> Callable[[bytes], object]:
    """``deserialize``, returning a ``Malformed`` where it raises ``DecodeError``."""

    def parse(raw: bytes) -> object:
        try:
            return deserialize(raw)
        except DecodeError as exc:
            return Malformed(f"malformed request: {exc}")

    return parse


class MalformedRequests(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc is untyped
    def __init__(self, service: str) -> None:
        """``service``: the full name of the service whose methods are guarded."""
        self._prefix = f"/{service}/"
        self._handlers: dict[str, Handler] = {}

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Handler]], details: Any
    ) -> Handler:
        handler = await continuation(details)
        method: str = details.method
        if handler is None or not method.startswith(self._prefix):
            return handler
        guarded = self._handlers.get(method)
        if guarded is None:
            guarded = self._handlers[method] = _guard(handler)
        return guarded


def _guard(handler: Handler) -> Handler:
    parse = tolerant(handler.request_deserializer)
    serialize = handler.response_serializer
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(
            handler.stream_stream, request_deserializer=parse, response_serializer=serialize
        )
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(
            handler.stream_unary, request_deserializer=parse, response_serializer=serialize
        )
    if handler.response_streaming:  # none in convmem.v1.Memory: left as it is
        return handler
    inner = handler.unary_unary

    async def unary_unary(request: object, context: Any) -> object:
        if isinstance(request, Malformed):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.detail)
        return await inner(request, context)

    return grpc.unary_unary_rpc_method_handler(
        unary_unary, request_deserializer=parse, response_serializer=serialize
    )
