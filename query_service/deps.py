"""Request dependencies: the tenant (from the credential only), the gateway, the arrival."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from query_service.auth import DEFAULT_TENANT
from query_service.early_shed import TENANT_KEY
from query_service.gateway import Gateway
from query_service.services import Services

__all__ = ["DEFAULT_TENANT", "ArrivalDep", "GatewayDep", "ServicesDep", "TenantDep"]


def gateway_of(conn: HTTPConnection) -> Gateway:
    gateway: Gateway = conn.app.state.gateway
    return gateway


# The dependencies FastAPI resolves per request are ``async``: a plain ``def`` dependency
# is run on the thread pool, three thread hops per request for a dictionary lookup.
async def _gateway(request: Request) -> Gateway:
    return gateway_of(request)


async def tenant_of(request: Request) -> str:
    """The tenant named by the bearer key; with no keys configured, ``default``."""
    return tenant_of_connection(request)


def tenant_of_connection(conn: HTTPConnection) -> str:
    """``tenant_of`` for any connection (a WebSocket too): same header, same keys. A tenant
    the early-shed middleware already resolved for this request is not resolved again."""
    known: str | None = conn.scope.get(TENANT_KEY)
    if known is not None:
        return known
    return gateway_of(conn).tenant(conn.headers.get("authorization"))


async def _arrival(request: Request) -> float:
    return arrival_of(request)


def arrival_of(conn: HTTPConnection) -> float:
    """When the request arrived (``limits.ArrivalMiddleware``), on the gateway's clock."""
    arrival = conn.scope.get("convmem.arrival")
    return float(arrival) if arrival is not None else gateway_of(conn).now()


async def _services(request: Request) -> Services:
    return services_of(request)


def services_of(conn: HTTPConnection) -> Services:
    """The running services (IndexUnavailable, 503, while starting)."""
    return gateway_of(conn).memory.services


TenantDep = Annotated[str, Depends(tenant_of)]
GatewayDep = Annotated[Gateway, Depends(_gateway)]
ArrivalDep = Annotated[float, Depends(_arrival)]
ServicesDep = Annotated[Services, Depends(_services)]
