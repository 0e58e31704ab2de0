"""`ArrivalMiddleware`: stamps each request's arrival, and caps request bodies.

The stamp (``scope["convmem.arrival"]``, on the gateway's clock) is taken when the ASGI app is
first called, before the body is read or validated, so time spent there counts against the
search budget. A body larger than ``max_body_bytes`` is refused with a 413 problem before it
is read in full (by ``Content-Length``, or by counting a chunked body as it arrives).
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from query_service.problems import problem

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024


class ArrivalMiddleware:
    def __init__(self, app: ASGIApp, *, clock: Callable[[], float], max_body_bytes: int) -> None:
        self.app = app
        self._clock = clock
        self._max = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        scope["convmem.arrival"] = self._clock()
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _content_length(scope)
        if length is not None and length > self._max:
            await _too_large(scope, receive, send, self._max)
            return
        seen = 0
        state = {"started": False, "refused": False}

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request" and not state["refused"]:
                seen += len(message.get("body", b""))
                if seen > self._max:
                    # answer now; the app sees a disconnect and its own answer is dropped
                    state["refused"] = True
                    if not state["started"]:
                        state["started"] = True
                        await _too_large(scope, receive, send, self._max)
                    return {"type": "http.disconnect"}
            return message

        async def tracking(message: Message) -> None:
            if state["refused"]:
                return
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        await self.app(scope, counted, tracking)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _too_large(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    response = problem(
        413,
        f"the request body is over the limit of {limit} bytes",
        title="Content Too Large",
        headers={"connection": "close"},
    )
    await response(scope, receive, send)
