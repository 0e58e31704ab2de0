"""The engine side of ``convmem eval``: retrievers for ``eval.runner`` (in-process, HTTP).

``local_retriever`` loads a dataset into a fresh store (the embedded PostgreSQL in a
temporary data dir, or a given server under a fresh tenant), brings the index shard up to
date, and searches it in-process, one ``Searcher`` per config (sharing each query's
embedding, see ``QueryVectorMemo``). ``HttpRetriever`` searches a
running service; the REST API takes only ``mode`` and ``budget_ms`` per request, so configs
that set other parameters are refused there.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import SecretStr

from convmem.settings import Settings
from convmem.wiring import build_services, load_utterances, search_params
from convmem_client import ApiError, Client, ConvmemError, RetryPolicy, TransportError
from convmem_client import DeadlineExceeded as HttpDeadlineExceeded
from eval.configs import EvalConfig
from eval.errors import ConfigError, EvalError
from eval.runner import RetrievedList
from indexer.ingest import MAX_BATCH
from indexer.models import Filters, UtteranceIn
from indexer.protocols import CrossEncoder, Embedder
from indexer.tier import IndexTier
from query_service.deadline import Deadline
from query_service.errors import DeadlineExceeded
from query_service.searcher import Searcher, SearchParams

Progress = Callable[[int], None]
HTTP_CONFIGS = ("lexical", "dense", "hybrid")


class QueryVectorMemo:
    """The eval searchers' ``Embedder``: each query is embedded once, for every config.

    The first config to search a query pays for its embedding; a later one gets the stored
    vector and is charged the measured cost (``take_charge_ms``), so every config's latency
    still includes one cold query embedding, while the machine does it once. Keeps the last
    ``size`` queries (the runner searches a query under every config before the next one).
    """

    def __init__(
        self, inner: Embedder, *, clock: Callable[[], float] = time.perf_counter, size: int = 64
    ) -> None:
        self._inner = inner
        self._clock = clock
        self._size = size
        self._memo: dict[str, tuple[npt.NDArray[np.float32], float]] = {}
        self._charge_ms = 0.0

    @property
    def dim(self) -> int:
        return self._inner.dim

    @property
    def model_id(self) -> str:
        return self._inner.model_id

    def embed_batch(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        return self._inner.embed_batch(texts)

    def embed_query(self, text: str) -> npt.NDArray[np.float32]:
        if text in self._memo:
            vector, cost_ms = self._memo[text]
            self._charge_ms += cost_ms
            return vector
        t0 = self._clock()
        vector = self._inner.embed_query(text)
        self._memo[text] = (vector, (self._clock() - t0) * 1000)
        if len(self._memo) > self._size:
            del self._memo[next(iter(self._memo))]
        return vector

    def take_charge_ms(self) -> float:
        """The embedding time saved since the last call (to add to a measured latency)."""
        charge, self._charge_ms = self._charge_ms, 0.0
        return charge


class InProcessRetriever:
    def __init__(
        self,
        *,
        shard: IndexTier,
        embedder: Embedder,
        params: SearchParams,
        tenant: str,
        clock: Callable[[], float] = time.perf_counter,
        cross_encoder: CrossEncoder | None = None,
    ) -> None:
        self._shard = shard
        self._cross_encoder = cross_encoder
        self._embedder = QueryVectorMemo(embedder, clock=clock)
        self._params = params
        self._tenant = tenant
        self._clock = clock
        self._searchers: dict[str, Searcher] = {}

    def _searcher(self, config: EvalConfig) -> Searcher:
        if config.name not in self._searchers:
            # eval.configs validated each override's name, type and range
            overrides: dict[str, Any] = dict(config.params)
            self._searchers[config.name] = Searcher(
                shard=self._shard,
                embedder=self._embedder,
                params=replace(self._params, **overrides),
                cross_encoder=self._cross_encoder,
            )
        return self._searchers[config.name]

    def search(
        self,
        query: str,
        *,
        k: int,
        user_id: str | None,
        config: EvalConfig,
        asked_at: datetime | None = None,
    ) -> RetrievedList:
        searcher = self._searcher(config)
        filters = Filters(tenant=self._tenant, user_id=user_id)
        self._embedder.take_charge_ms()
        t0 = self._clock()
        try:
            result = searcher.search(
                query,
                k=k,
                mode=config.mode,
                filters=filters,
                deadline=Deadline.after_ms(config.budget_ms),
                now=asked_at,
            )
        except DeadlineExceeded:
            took_ms = (self._clock() - t0) * 1000 + self._embedder.take_charge_ms()
            return RetrievedList((), (), took_ms, ("deadline",))
        took_ms = (self._clock() - t0) * 1000 + self._embedder.take_charge_ms()
        return RetrievedList(
            ids=tuple(h.record.id for h in result.hits),
            scores=tuple(h.score for h in result.hits),
            latency_ms=took_ms,
            degraded=tuple(result.degraded),
        )


def eval_settings(
    base: Settings, data_dir: Path, *, model_cache: Path | None, db_url: str | None
) -> Settings:
    """``base`` pointed at a fresh store in ``data_dir``: no demo data, no query cache (each
    query's embedding is timed cold; see ``QueryVectorMemo``), the ONNX export cached in
    ``model_cache``."""
    cache = model_cache or base.embedder.cache_dir or base.data_dir / "models"
    return base.model_copy(
        update={
            "data_dir": data_dir,
            "demo_data": False,
            "postgres": base.postgres.model_copy(
                update={"url": SecretStr(db_url) if db_url else None}
            ),
            "embedder": base.embedder.model_copy(update={"cache_dir": cache, "query_cache": 0}),
        }
    )


@contextmanager
def local_retriever(
    base: Settings,
    utterances: Sequence[UtteranceIn],
    *,
    model_cache: Path | None,
    db_url: str | None,
    progress: Progress | None = None,
) -> Iterator[InProcessRetriever]:
    """Load ``utterances`` into a fresh store and yield a retriever over it; clean up after."""
    tenant = f"eval-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="convmem-eval-") as tmp:
        settings = eval_settings(base, Path(tmp), model_cache=model_cache, db_url=db_url)
        services = build_services(settings)
        try:
            load_utterances(
                services.ingestor, tenant, utterances, batch_size=MAX_BATCH, progress=progress
            )
            services.tailer.catch_up()
            if not services.tailer.wait_for(services.store.max_seq(), 60.0):
                raise EvalError("the index did not catch up with the store within 60 s")
            yield InProcessRetriever(
                shard=services.shard,
                embedder=services.embedder,
                params=search_params(settings),
                tenant=tenant,
                cross_encoder=services.cross_encoder,
            )
        finally:
            services.close()


def check_http_configs(configs: Sequence[EvalConfig]) -> None:
    """Refuse configs a running service cannot honour per request (anything but the mode)."""
    for c in configs:
        if c.params:
            raise ConfigError(
                f"config {c.name!r} sets {', '.join(c.params)}, but over HTTP a search takes only"
                f" mode and budget_ms (the service's settings decide the rest); use one of"
                f" {', '.join(HTTP_CONFIGS)} or a config file entry that sets only those"
            )


class HttpRetriever:
    def __init__(
        self,
        *,
        client: Client,
        min_seq: int | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        """``client`` should not retry (``RetryPolicy(max_attempts=1)``): a retry's wait would
        count in the latency measured, and a 504 is an outcome to score."""
        self._client = client
        self._min_seq = min_seq
        self._clock = clock

    def search(
        self,
        query: str,
        *,
        k: int,
        user_id: str | None,
        config: EvalConfig,
        asked_at: datetime | None = None,
    ) -> RetrievedList:
        t0 = self._clock()
        try:
            result = self._client.search(
                query,
                k=k,
                mode=config.mode,
                user_id=user_id,
                budget_ms=config.budget_ms,
                min_seq=self._min_seq,
                reference_time=asked_at,
            )
        except HttpDeadlineExceeded:
            return RetrievedList((), (), (self._clock() - t0) * 1000, ("deadline",))
        except ApiError as exc:
            raise EvalError(f"search failed: {exc.status} {exc.detail}") from exc
        except TransportError as exc:
            raise EvalError(f"cannot reach the service: {exc}") from exc
        took_ms = (self._clock() - t0) * 1000
        return RetrievedList(
            ids=tuple(h.utterance_id for h in result.hits),
            scores=tuple(h.score for h in result.hits),
            latency_ms=took_ms,
            degraded=result.degraded,
        )


@contextmanager
def http_retriever(
    url: str,
    api_key: str | None,
    utterances: Sequence[UtteranceIn],
    *,
    progress: Progress | None = None,
) -> Iterator[HttpRetriever]:
    """Load ``utterances`` into the service at ``url`` and yield a retriever over it."""
    from convmem.cli import _load_over_http  # the `load` command's upload, reused

    try:
        seq = _load_over_http(url, api_key, utterances, progress or (lambda _n: None))
    except TransportError as exc:
        raise EvalError(f"cannot reach {url}: {exc}") from exc
    except ConvmemError as exc:
        raise EvalError(f"loading the dataset into {url} failed: {exc}") from exc
    no_retry = RetryPolicy(max_attempts=1)
    with Client(url, api_key=api_key, timeout=30, retry=no_retry) as client:
        yield HttpRetriever(client=client, min_seq=seq)
