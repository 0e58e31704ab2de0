"""Errors raised by the convmem clients, the same whichever transport carried the call.

ConvmemError
├── ApiError             the service answered with an error (``status``, ``title``, ``detail``)
│   ├── BadRequest        the request is invalid (400, 413, 422; gRPC INVALID_ARGUMENT)
│   ├── Unauthorized      a missing or unknown API key (401, 403; UNAUTHENTICATED)
│   ├── NotFound          no such resource, or another tenant's (404; NOT_FOUND)
│   ├── Conflict          the write contradicts stored state (409; ABORTED, ALREADY_EXISTS)
│   ├── Overloaded        shed by admission control; retry after ``retry_after_s`` (429;
│   │                     RESOURCE_EXHAUSTED)
│   ├── Unavailable       starting, or the store is down (502, 503; UNAVAILABLE)
│   └── DeadlineExceeded  no result at all within the budget (504; DEADLINE_EXCEEDED)
└── TransportError       no answer: nothing listens, the connection broke, or it timed out

An ``ApiError`` from gRPC carries the HTTP status of the same meaning, so one ``except``
serves both transports; ``title`` is then the gRPC code's name (``"NOT_FOUND"``).
"""

from __future__ import annotations


class ConvmemError(Exception):
    pass


class TransportError(ConvmemError):
    """The call got no answer from the service (connection refused or reset, timeout)."""


class ApiError(ConvmemError):
    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail


class BadRequest(ApiError):
    pass


class Unauthorized(ApiError):
    pass


class NotFound(ApiError):
    pass


class Conflict(ApiError):
    pass


class Overloaded(ApiError):
    """Refused at once by admission control; ``retry_after_s`` is the service's hint."""

    def __init__(self, status: int, title: str, detail: str, *, retry_after_s: float) -> None:
        super().__init__(status, title, detail)
        self.retry_after_s = retry_after_s


class Unavailable(ApiError):
    pass


class DeadlineExceeded(ApiError):
    pass


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Unauthorized,
    404: NotFound,
    409: Conflict,
    413: BadRequest,
    422: BadRequest,
    502: Unavailable,
    503: Unavailable,
    504: DeadlineExceeded,
}


def error_for(
    status: int, title: str, detail: str, *, retry_after_s: float | None = None
) -> ApiError:
    """The ``ApiError`` subclass for an HTTP status (other 4xx: ``BadRequest``)."""
    if status == 429:
        return Overloaded(status, title, detail, retry_after_s=retry_after_s or 0.0)
    cls = _BY_STATUS.get(status)
    if cls is None:
        cls = BadRequest if 400 <= status < 500 else ApiError
    return cls(status, title, detail)
