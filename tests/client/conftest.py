"""A live convmem for the client tests: REST under uvicorn and gRPC beside it, on real sockets.

One server per test module (its own database on the session's PostgreSQL, the real static
embedder): two tenants behind two API keys, and one search slot, so that a test can hold it
and watch the clients be shed and retry.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI

from convmem_client import Client, GrpcClient
from indexer.embedders import load_embedder
from indexer.protocols import Embedder
from query_service.admission import Admission, AdmissionParams
from query_service.grpc_server import GrpcServer
from tests.conftest import app_settings, fresh_database
from tests.query_service.conftest import app_for

KEY_A, KEY_B = "key-a-0123456789", "key-b-0123456789"
KEYS = {KEY_A: "tenant-a", KEY_B: "tenant-b"}
#: what the service tells a shed client to wait (REST: retry_after_ms; gRPC: retry-after-ms)
RETRY_AFTER_S = 0.2
#: a search budget long enough to wait for the index to reach ``min_seq`` (half of it waits)
FRESH_MS = 2000.0


@dataclass(frozen=True)
class Live:
    url: str
    #: ``host:port`` of the gRPC server
    target: str
    admission: Admission


@pytest.fixture(scope="session")
def client_embedder(model_cache: Path) -> Embedder:
    return load_embedder("static", model_path=None, cache_dir=model_cache)


@pytest.fixture(scope="module")
def module_database(server_url: str) -> Iterator[str]:
    with fresh_database(server_url, "c") as url:
        yield url


@pytest.fixture(scope="module")
def live(
    module_database: str, tmp_path_factory: pytest.TempPathFactory, client_embedder: Embedder
) -> Iterator[Live]:
    cfg = app_settings(module_database, tmp_path_factory.mktemp("client"), KEYS)
    grpc_server = GrpcServer(port=0, health_interval_s=0.05)
    # the tests shed searches on purpose; pressure_share=1 keeps that from shedding the next
    # test's ingest (that rule is tested in tests/query_service/test_admission.py)
    one_slot = AdmissionParams(
        search_limit_initial=1,
        search_limit_min=1,
        search_limit_max=1,
        retry_after_s=RETRY_AFTER_S,
        pressure_share=1.0,
    )
    app = app_for(cfg, client_embedder, admission=one_slot, companions=[grpc_server])
    with serve(app) as url:
        target = f"127.0.0.1:{grpc_server.port}"
        with Client(url) as rest, GrpcClient(target) as grpc:  # health is polled: it lags
            rest.wait_ready(60)
            grpc.wait_ready(10)
        yield Live(
            url=url, target=f"127.0.0.1:{grpc_server.port}", admission=app.state.gateway.admission
        )


@pytest.fixture
def nothing_listens() -> str:
    """An address where nothing listens (a port that was just free)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    return f"127.0.0.1:{port}"


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Run ``app`` under uvicorn in a thread on a loopback port picked by the OS."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", ws="none")
    )
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
