"""Request dependencies: the tenant (from the credential only) and the running services."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from indexer.errors import IndexUnavailable
from query_service.errors import Unauthorized
from query_service.services import Services

DEFAULT_TENANT = "default"


def tenant_of(request: Request) -> str:
    """The tenant named by the bearer key; with no keys configured, ``default``."""
    return tenant_of_connection(request)


def tenant_of_connection(conn: HTTPConnection) -> str:
    """``tenant_of`` for any connection (a WebSocket too): same header, same keys."""
    keys: dict[str, str] = conn.app.state.api_keys
    if not keys:
        return DEFAULT_TENANT
    header = conn.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing bearer API key (Authorization: Bearer <key>)")
    token = token.strip()
    for key, tenant in keys.items():
        if hmac.compare_digest(key.encode(), token.encode()):
            return tenant
    raise Unauthorized("invalid API key")


def services_of(request: Request) -> Services:
    services: Services | None = request.app.state.services
    if services is None:
        error: str | None = request.app.state.startup_error
        raise IndexUnavailable(error or "the service is starting: the index is being loaded")
    return services


TenantDep = Annotated[str, Depends(tenant_of)]
ServicesDep = Annotated[Services, Depends(services_of)]
