"""`create_app`: the FastAPI application factory.

The lifespan starts building the services in a background thread and serves at once:
``/healthz`` answers immediately, ``/readyz`` (and every ``/v1`` route) answer 503 until the
index is loaded and caught up with the change feed. ``companions`` (the gRPC server) start
and stop with it, on the same event loop and over the same ``Gateway``, so every transport
shares one admission controller and one set of metrics. On shutdown the tailer writes a
snapshot.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from typing import Protocol

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from indexer.errors import IndexUnavailable
from indexer.shard import IndexShard
from query_service import problems
from query_service.admission import Admission, AdmissionParams
from query_service.auth import Authenticator, KeyRing
from query_service.context_ws import router as context_router
from query_service.early_shed import EarlyShedMiddleware
from query_service.gateway import Gateway
from query_service.heap import HeapFreezer
from query_service.limits import DEFAULT_MAX_BODY_BYTES, ArrivalMiddleware
from query_service.loop_lag import LoopLag
from query_service.memory_service import MemoryService
from query_service.metrics import Metrics
from query_service.rate_limit import RateLimiter, RateLimits
from query_service.routes import router
from query_service.services import Services
from query_service.sessions import SessionLimits, SessionSlots

_log = logging.getLogger(__name__)


class Companion(Protocol):
    """A server that runs beside REST over the same gateway (``grpc_server.GrpcServer``)."""

    async def start(self, gateway: Gateway) -> None: ...

    async def stop(self) -> None: ...


def create_app(
    *,
    services_factory: Callable[[], Services],
    api_keys: Mapping[str, str] | None = None,
    auth: Authenticator | None = None,
    routers: Sequence[APIRouter] = (),
    admission: AdmissionParams | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    companions: Sequence[Companion] = (),
    rates: RateLimits | None = None,
    sessions: SessionLimits | None = None,
) -> FastAPI:
    """``services_factory`` does the slow work (store, models, index); it runs off the loop.

    ``rates`` and ``sessions``: the per-tenant limits (None: their defaults, ``RateLimits()``
    and ``SessionLimits()``), shared by every transport as admission control is.

    ``routers`` are mounted beside the REST API (``audio_ingest``'s WebSocket, for one): they
    reach the services through ``deps`` like the built-in routes.
    """
    metrics = Metrics()
    loop_lag = LoopLag()
    gateway = Gateway(
        admission=Admission(admission, lag=lambda: loop_lag.lag_s),
        metrics=metrics,
        auth=auth or KeyRing(api_keys),
        rates=RateLimiter(rates),
        sessions=SessionSlots(sessions),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        done = threading.Event()

        def build() -> None:
            try:
                services = services_factory()
                services.searcher.observe(metrics)
                app.state.services = services
                gateway.attach(MemoryService(services=services))
                _bind_gauges(metrics, gateway, services, loop_lag)
            except Exception as exc:  # noqa: BLE001 - reported by /readyz, logged here
                _log.exception("startup failed")
                app.state.startup_error = f"startup failed: {exc}"
                gateway.startup_failed(app.state.startup_error)
            finally:
                done.set()

        builder = threading.Thread(target=build, name="convmem-startup", daemon=True)
        builder.start()
        started: list[Companion] = []
        loop_lag.start()
        freezer = asyncio.get_running_loop().create_task(_freeze_heap(app, done))
        try:
            for companion in companions:
                await companion.start(gateway)
                started.append(companion)
            yield
        finally:
            freezer.cancel()
            for companion in reversed(started):
                await companion.stop()
            await loop_lag.stop()
            await asyncio.to_thread(done.wait)
            gateway.close()
            services: Services | None = app.state.services
            if services is not None:
                await asyncio.to_thread(services.close)

    app = FastAPI(
        title="convmem",
        version="0.1.0",
        summary="Search over the long-term memory of voice AI agents",
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    app.state.services = None
    app.state.startup_error = None
    problems.install(app)
    # the last added runs first: stamp the arrival, then refuse early what would be shed
    app.add_middleware(EarlyShedMiddleware, gateway=gateway)
    app.add_middleware(ArrivalMiddleware, clock=gateway.now, max_body_bytes=max_body_bytes)
    app.include_router(router)
    app.include_router(context_router)
    for extra in routers:
        app.include_router(extra)

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    def readyz(request: Request) -> JSONResponse:
        """Readiness: services built, store reachable, index caught up with the feed."""
        services: Services | None = request.app.state.services
        if services is None:
            reason = request.app.state.startup_error or "starting"
            return problems.problem(503, reason, title="Not ready")
        if not services.store.ping():  # the root cause first: the feed fails because of it
            return problems.problem(503, "the store of record is unreachable", title="Not ready")
        error = services.tailer.last_error
        if error is not None:
            return problems.problem(503, f"change feed: {error}", title="Not ready")
        try:
            seq, docs = services.shard.seq, len(services.shard)
        except IndexUnavailable as exc:  # a remote tier that does not answer
            return problems.problem(503, str(exc), title="Not ready")
        return JSONResponse({"status": "ready", "index_seq": seq, "docs": docs})

    @app.get("/readyz/serving", tags=["ops"])
    def serving(request: Request) -> JSONResponse:
        """Traffic readiness (the Kubernetes readinessProbe): searches can be answered.

        Unlike ``/readyz`` it stays 200 while the store is down: every replica keeps answering
        searches from its index then, and taking them all out of the Service at once would
        turn a store outage into a search outage. The body says what is degraded."""
        services: Services | None = request.app.state.services
        if services is None:
            reason = request.app.state.startup_error or "starting"
            return problems.problem(503, reason, title="Not ready")
        store_up = services.store.ping()
        feed_error = services.tailer.last_error
        degraded = [name for name, bad in (("store", not store_up), ("feed", feed_error)) if bad]
        try:
            seq, docs = services.shard.seq, len(services.shard)
        except IndexUnavailable as exc:  # a remote tier that does not answer: nothing to serve
            return problems.problem(503, str(exc), title="Not ready")
        return JSONResponse(
            {"status": "serving", "degraded": degraded, "index_seq": seq, "docs": docs}
        )

    @app.get("/metrics", tags=["ops"], include_in_schema=False)
    def metrics_page() -> Response:
        """Prometheus text: stage latencies, outcomes per transport, in flight, index lag."""
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    def page() -> HTMLResponse:
        html = resources.files("query_service").joinpath("static/index.html").read_text("utf-8")
        return HTMLResponse(html)

    return app


async def _freeze_heap(app: FastAPI, built: threading.Event) -> None:
    """Once the services are built, keep the index's objects out of the GC (``heap``)."""
    while not built.is_set():
        await asyncio.sleep(0.1)
    services: Services | None = app.state.services
    if services is not None and isinstance(services.shard, IndexShard):  # a remote tier
        shard = services.shard  # holds no corpus here: nothing to keep from the GC
        await HeapFreezer(size=lambda: len(shard)).run()


def _bind_gauges(metrics: Metrics, gateway: Gateway, services: Services, loop_lag: LoopLag) -> None:
    admission = gateway.admission

    def inflight(kind: str) -> float:
        return float(admission.inflight(kind))  # type: ignore[arg-type]  # one of KINDS

    def limit(kind: str) -> float:
        return float(admission.limit_of(kind))  # type: ignore[arg-type]  # one of KINDS

    metrics.bind(
        inflight=inflight,
        limit=limit,
        lag_seq=lambda: float(services.tailer.lag_seq),
        lag_s=lambda: services.tailer.lag_s,
        loop_lag_s=lambda: loop_lag.lag_s,
    )
