"""App fixtures: the real app, on a real PostgreSQL, with the real (ONNX int8) embedder."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from convmem.settings import Settings
from convmem.wiring import build_auth, build_services
from indexer.embedders import load_embedder
from indexer.protocols import Embedder
from query_service.app import create_app
from tests.conftest import app_settings


class CountingEmbedder:
    """Delegates to a real embedder and counts document embeddings (to prove none happen)."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.documents = 0

    @property
    def dim(self) -> int:
        return self.inner.dim

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    def embed_batch(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        self.documents += len(texts)
        return self.inner.embed_batch(texts)

    def embed_query(self, text: str) -> npt.NDArray[np.float32]:
        return self.inner.embed_query(text)


@pytest.fixture(scope="session")
def real_embedder(model_cache: Path) -> Embedder:
    return load_embedder("static", model_path=None, cache_dir=model_cache)


@pytest.fixture
def app_client(
    database_url: str, tmp_path: Path, real_embedder: Embedder
) -> Callable[..., AbstractContextManager[TestClient]]:
    """``with app_client(keys={...}) as client:`` — a started app that is ready to serve."""

    @contextmanager
    def make(
        *, keys: dict[str, str] | None = None, embedder: Embedder | None = None, **settings: object
    ) -> Iterator[TestClient]:
        cfg = app_settings(database_url, tmp_path, keys, **settings)
        with TestClient(app_for(cfg, embedder or real_embedder)) as client:
            wait_ready(client)
            yield client

    return make


def app_for(cfg: Settings, embedder: Embedder, **overrides: Any) -> FastAPI:
    """The app as ``convmem serve`` builds it from ``cfg``, with this embedder; ``overrides``
    are ``create_app`` arguments (``routers``, ``companions``, ``admission``)."""
    args: dict[str, Any] = {
        "auth": build_auth(cfg),
        "admission": cfg.admission.params(),
        "max_body_bytes": cfg.admission.max_body_bytes,
        "rates": cfg.limits.rates(),
        "sessions": cfg.limits.sessions(),
    }
    args.update(overrides)
    return create_app(services_factory=lambda: build_services(cfg, embedder=embedder), **args)


def wait_ready(client: TestClient, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        resp = client.get("/readyz")
        if resp.status_code == 200:
            return
        if "startup failed" in resp.text:
            raise AssertionError(resp.text)
        time.sleep(0.05)
    raise AssertionError("app not ready in time")
