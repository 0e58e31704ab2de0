"""The deadline-driven pipeline: stages are skipped (and named) when they do not fit."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from indexer.bm25_index import TantivyBM25Index
from indexer.faiss_index import FaissVectorIndex
from indexer.models import Filters, IndexDoc, Role
from indexer.shard import DocRecord, IndexShard
from query_service.deadline import Deadline
from query_service.errors import DeadlineExceeded
from query_service.searcher import Searcher, SearchParams

DIM = 8


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class SlowEmbedder:
    """Advances the fake clock by ``cost`` seconds per query embedding."""

    dim = DIM
    model_id = "slow"

    def __init__(self, clock: FakeClock, cost: float) -> None:
        self.clock, self.cost = clock, cost

    def embed_batch(self, texts):
        return np.ones((len(texts), DIM), np.float32) / np.sqrt(DIM)

    def embed_query(self, text):
        self.clock.now += self.cost
        return np.ones(DIM, np.float32) / np.sqrt(DIM)


def shard() -> IndexShard:
    s = IndexShard(lexical=TantivyBM25Index(), vector=FaissVectorIndex(dim=DIM))
    rng = np.random.default_rng(0)
    docs = []
    for i, text in enumerate(["the cat sat", "a dog barked", "the cat and the dog"]):
        v = rng.standard_normal(DIM).astype(np.float32)
        docs.append(
            IndexDoc(
                uid=i + 1,
                tenant="t",
                user_id="u",
                conversation_id="c",
                speaker="s",
                role=Role.USER,
                started_at=float(i),
                text=text,
                embedding=v / np.linalg.norm(v),
            )
        )
    records = [
        DocRecord(
            uid=d.uid,
            tenant="t",
            id=f"u{d.uid}",
            conversation_id="c",
            user_id="u",
            turn=d.uid,
            speaker="s",
            role=Role.USER,
            text=d.text,
            started_at=datetime.fromtimestamp(d.started_at, UTC),
        )
        for d in docs
    ]
    s.load(docs, records, seq=3)
    return s


def test_slow_embedding_is_skipped_and_named() -> None:
    clock = FakeClock()
    searcher = Searcher(
        shard=shard(),
        embedder=SlowEmbedder(clock, 0.030),
        params=SearchParams(reserve_s=0.0),
        clock=clock,
    )
    f = Filters(tenant="t")
    # first query: the embed stage's prior estimate fits, runs (30 ms of fake time), is learnt
    r = searcher.search(
        "cat", k=3, mode="hybrid", filters=f, deadline=Deadline.after_ms(50, clock=clock)
    )
    assert "embed" in r.timings_ms and r.degraded == []
    # with a 10 ms budget the learnt embedding cost no longer fits: lexical only, and said so
    for _ in range(3):
        searcher._costs.observe("embed", 0.030)  # noqa: SLF001 - make the estimate certain
    r = searcher.search(
        "cat", k=3, mode="hybrid", filters=f, deadline=Deadline.after_ms(10, clock=clock)
    )
    assert "embed" in r.degraded and "dense" in r.degraded and "embed" not in r.timings_ms
    assert r.hits and r.hits[0].record.text == "the cat sat"
    # dense-only with nothing that fits is the one case without a result: 504
    with pytest.raises(DeadlineExceeded):
        searcher.search(
            "cat", k=3, mode="dense", filters=f, deadline=Deadline.after_ms(5, clock=clock)
        )


def test_a_skipped_stage_is_retried_later() -> None:
    clock = FakeClock()
    searcher = Searcher(
        shard=shard(),
        embedder=SlowEmbedder(clock, 0.001),
        params=SearchParams(reserve_s=0.0),
        clock=clock,
    )
    searcher._costs.observe("embed", 1.0)  # noqa: SLF001 - one pathological outlier
    searcher._costs.observe("embed", 1.0)  # noqa: SLF001
    f = Filters(tenant="t")
    outcomes = []
    for _ in range(30):
        r = searcher.search(
            "dog", k=2, mode="hybrid", filters=f, deadline=Deadline.after_ms(50, clock=clock)
        )
        outcomes.append("embed" in r.degraded)
    assert outcomes[0] and not outcomes[-1]  # skipped at first, back once the estimate decays


def test_stale_index_is_reported() -> None:
    clock = FakeClock()
    searcher = Searcher(
        shard=shard(),
        embedder=SlowEmbedder(clock, 0.001),
        params=SearchParams(),
        wait_for_seq=lambda seq, timeout: False,
        clock=clock,
    )
    r = searcher.search(
        "cat",
        k=2,
        mode="lexical",
        filters=Filters(tenant="t"),
        deadline=Deadline.after_ms(50, clock=clock),
        min_seq=10,
    )
    assert "stale_index" in r.degraded and r.hits
