"""Errors raised by the query service (mapped to HTTP in one place: ``problems.py``).

QueryServiceError
├── DeadlineExceeded   no result at all could be produced within the budget (504)
└── Unauthorized       a missing or unknown API key (401)
"""

from __future__ import annotations


class QueryServiceError(Exception):
    pass


class DeadlineExceeded(QueryServiceError):
    pass


class Unauthorized(QueryServiceError):
    pass
