"""Errors raised by the query service (mapped to HTTP in one place: ``problems.py``).

QueryServiceError
├── DeadlineExceeded   no result at all could be produced within the budget (504)
├── Overloaded         refused at once by admission control (429, Retry-After)
├── Unauthorized       a missing or unknown API key (401)
└── Forbidden          a read-only key asked to write (403)
"""

from __future__ import annotations


class QueryServiceError(Exception):
    pass


class DeadlineExceeded(QueryServiceError):
    pass


class Unauthorized(QueryServiceError):
    pass


class Overloaded(QueryServiceError):
    """Refused at once by admission control: retry after ``retry_after_s`` (429)."""

    def __init__(self, message: str, *, retry_after_s: float, reason: str) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.reason = reason


class Forbidden(QueryServiceError):
    """The key is valid but may not do this (a read-only key, a write)."""
