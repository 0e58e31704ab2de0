"""`EarlyShedMiddleware`: refuse a search or an ingest before its body is read.

Under overload most of a refused request's cost is reading, parsing and validating it. When
the gateway would refuse it anyway (``Gateway.check``: the tenant has no token left of its
rate limit, the class is at its limit, the tenant over its share, or ingest under search
pressure), this answers 429 at once from the headers alone: no body read, no JSON, no
validation. It takes nothing; a request it lets through is rate limited and admitted (or
refused) properly by the ``Gateway``, an ingest then by its number of utterances. A request
whose key is wrong is passed on, to be answered 401 by the route.

The answer is encoded once per (kind, reason, retry hint) and then sent as bytes: a refusal
under overload should cost as little as the server can make it. (Rate-limit hints vary by
the millisecond, so the cache is bounded.)
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from query_service.admission import Kind
from query_service.errors import Overloaded, Unauthorized
from query_service.gateway import Gateway
from query_service.problems import shed

_DETAIL = {
    "capacity": "at capacity: every slot is busy; nothing queues",
    "fairness": "this tenant holds its share of the slots while others wait",
    "priority": "ingest is shed while searches are under pressure",
    "rate_limit": "this tenant is over its rate limit; retry after retry_after_ms",
}
#: cached answers past this many are dropped (rate-limit hints take many values)
_MAX_ANSWERS = 256

#: where the tenant this resolved is left for ``deps.tenant_of_connection``
TENANT_KEY = "convmem.tenant"

_ROUTES: dict[tuple[str, str], Kind] = {
    ("POST", "/v1/search"): "search",
    ("POST", "/v1/utterances"): "ingest",
}


class EarlyShedMiddleware:
    def __init__(self, app: ASGIApp, *, gateway: Gateway) -> None:
        self.app = app
        self._gateway = gateway
        self._answers: dict[tuple[str, str, float], tuple[list[tuple[bytes, bytes]], bytes]] = {}

    def _answer(self, kind: str, exc: Overloaded) -> tuple[list[tuple[bytes, bytes]], bytes]:
        """``problems.shed``'s answer, with a fixed detail per reason, encoded once."""
        key = (kind, exc.reason, exc.retry_after_s)
        cached = self._answers.get(key)
        if cached is None:
            if len(self._answers) >= _MAX_ANSWERS:
                self._answers.clear()
            detail = f"{kind}: {_DETAIL.get(exc.reason, exc.reason)}"
            response = shed(Overloaded(detail, retry_after_s=exc.retry_after_s, reason=exc.reason))
            cached = self._answers[key] = (list(response.raw_headers), bytes(response.body))
        return cached

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = (
            _ROUTES.get((scope.get("method", ""), scope.get("path", "")))
            if scope["type"] == "http"
            else None
        )
        if kind is None or not self._gateway.ready:
            await self.app(scope, receive, send)
            return
        auth = None
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                auth = value.decode("latin-1")
                break
        try:
            tenant = self._gateway.tenant(auth)
            scope[TENANT_KEY] = tenant  # the route's dependency takes it from here
            arrival = scope.get("convmem.arrival")
            self._gateway.check(
                kind, tenant, transport="rest", arrival=None if arrival is None else float(arrival)
            )
        except Unauthorized:
            pass
        except Overloaded as exc:
            headers, body = self._answer(kind, exc)
            await send({"type": "http.response.start", "status": 429, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)
