"""RFC 9457 problem details: the one place where errors become HTTP responses.

Only the client's own mistakes are 4xx: request validation, ``InvalidInput``, a missing or
foreign resource, a conflict. Anything else that escapes a route is an internal error: a 500
problem that says nothing of the internals and carries a ``request_id``, under which the
exception and its traceback are logged.
"""

from __future__ import annotations

import logging
import math
import uuid
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from indexer.errors import Conflict, IndexUnavailable, InvalidInput, NotFound, StoreError
from query_service.errors import DeadlineExceeded, Forbidden, Overloaded, Unauthorized

_log = logging.getLogger(__name__)
MEDIA_TYPE = "application/problem+json"


def problem(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: object,
) -> JSONResponse:
    body: dict[str, object] = {
        "type": "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        **extra,
    }
    if status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def shed(exc: Overloaded) -> JSONResponse:
    """429 with ``Retry-After`` (whole seconds, as HTTP wants) and ``retry_after_ms``."""
    return problem(
        429,
        str(exc),
        title="Too Many Requests",
        headers={"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))},
        retry_after_ms=round(exc.retry_after_s * 1000),
        reason=exc.reason,
    )


# Most specific first: NotFound and Conflict are StoreErrors.
_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (Unauthorized, 401),
    (Forbidden, 403),
    (Overloaded, 429),
    (NotFound, 404),
    (Conflict, 409),
    (InvalidInput, 422),
    (IndexUnavailable, 503),
    (DeadlineExceeded, 504),
    (StoreError, 503),
)


async def _mapped(_request: Request, exc: Exception) -> JSONResponse:
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            if isinstance(exc, Overloaded):
                return shed(exc)
            if cls is StoreError:
                _log.error("store error: %s", exc)
                return problem(
                    status,
                    "the store of record is unavailable; retry later",
                    headers={"Retry-After": "1"},
                )
            if status == 503:
                return problem(status, str(exc), headers={"Retry-After": "1"})
            return problem(status, str(exc))
    raise exc


async def _internal(request: Request, exc: Exception) -> JSONResponse:
    request_id = uuid.uuid4().hex[:16]
    _log.error(
        "internal error, request_id=%s, %s %s",
        request_id,
        request.method,
        request.url.path,
        exc_info=exc,
    )
    return problem(
        500,
        f"internal error; quote request_id {request_id} when reporting it",
        request_id=request_id,
    )


async def _invalid(_request: Request, exc: Exception) -> JSONResponse:
    raw = exc.errors() if isinstance(exc, RequestValidationError) else []
    errors = [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")}
        for e in raw
    ]
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(p) for p in first["loc"] if p != "body") or "body"
    return problem(422, f"{where}: {first['msg']}", errors=errors)


async def _http(_request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, StarletteHTTPException):
        return problem(exc.status_code, str(exc.detail))
    raise exc


def install(app: FastAPI) -> None:
    """Register the handlers: every error leaves as application/problem+json."""
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StarletteHTTPException, _http)
    for cls, _status in _STATUS:
        app.add_exception_handler(cls, _mapped)
    app.add_exception_handler(Exception, _internal)
