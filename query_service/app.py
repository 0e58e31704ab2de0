"""`create_app`: the FastAPI application factory.

The lifespan starts building the services in a background thread and serves at once:
``/healthz`` answers immediately, ``/readyz`` (and every ``/v1`` route) answer 503 until the
index is loaded and caught up with the change feed. On shutdown the tailer writes a snapshot.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse

from query_service import problems
from query_service.routes import router
from query_service.services import Services

_log = logging.getLogger(__name__)


def create_app(
    *,
    services_factory: Callable[[], Services],
    api_keys: Mapping[str, str] | None = None,
    routers: Sequence[APIRouter] = (),
) -> FastAPI:
    """``services_factory`` does the slow work (store, models, index); it runs off the loop.

    ``routers`` are mounted beside the REST API (``audio_ingest``'s WebSocket, for one): they
    read ``app.state.services`` and ``app.state.api_keys`` like the built-in routes.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.services = None
        app.state.startup_error = None
        done = threading.Event()

        def build() -> None:
            try:
                app.state.services = services_factory()
            except Exception as exc:  # noqa: BLE001 - reported by /readyz, logged here
                _log.exception("startup failed")
                app.state.startup_error = f"startup failed: {exc}"
            finally:
                done.set()

        builder = threading.Thread(target=build, name="convmem-startup", daemon=True)
        builder.start()
        try:
            yield
        finally:
            await asyncio.to_thread(done.wait)
            services: Services | None = app.state.services
            if services is not None:
                await asyncio.to_thread(services.close)

    app = FastAPI(
        title="convmem",
        version="0.1.0",
        summary="Search over the long-term memory of voice AI agents",
        lifespan=lifespan,
    )
    app.state.api_keys = dict(api_keys or {})
    app.state.services = None
    app.state.startup_error = None
    problems.install(app)
    app.include_router(router)
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
        return JSONResponse(
            {"status": "ready", "index_seq": services.shard.seq, "docs": len(services.shard)}
        )

    @app.get("/", include_in_schema=False)
    def page() -> HTMLResponse:
        html = resources.files("query_service").joinpath("static/index.html").read_text("utf-8")
        return HTMLResponse(html)

    return app
