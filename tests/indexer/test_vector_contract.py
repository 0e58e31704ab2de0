"""The VectorIndex contract, run against every implementation (the numpy reference and FAISS).

Expected results are brute force over ``Filters.matches`` — the definition of a correct answer.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable

import numpy as np
import pytest

from indexer.models import Filters, IndexDoc, Role
from indexer.numpy_index import NumpyVectorIndex
from indexer.protocols import VectorIndex

DIM = 24


def _faiss(dim: int) -> VectorIndex:
    module = importlib.import_module("indexer.faiss_index")
    index: VectorIndex = module.FaissVectorIndex(dim=dim)
    return index


IMPLEMENTATIONS: dict[str, Callable[[int], VectorIndex]] = {
    "numpy": lambda dim: NumpyVectorIndex(dim=dim),
    "faiss": _faiss,
}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def make(request: pytest.FixtureRequest) -> Callable[[int], VectorIndex]:
    return IMPLEMENTATIONS[request.param]


def corpus(n: int, seed: int = 0) -> list[IndexDoc]:
    rng = np.random.default_rng(seed)
    vecs = rng.standard_normal((n, DIM)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    return [
        IndexDoc(
            uid=1000 + i,
            tenant=["t1", "t2"][i % 2],
            user_id=[None, "u1", "u2", "u3"][i % 4],
            conversation_id=f"c{i % 7}",
            speaker=["Ann", "Bo", "Agent"][i % 3],
            role=[Role.USER, Role.AGENT, Role.OTHER][i % 3],
            started_at=1_700_000_000.0 + 60.0 * i,
            text=f"doc {i}",
            embedding=vecs[i],
        )
        for i in range(n)
    ]


def brute(docs: list[IndexDoc], q: np.ndarray, k: int, f: Filters) -> tuple[list[int], list[float]]:
    scored = sorted((-float(d.embedding @ q), d.uid) for d in docs if f.matches(d))[:k]
    return [uid for _, uid in scored], [-s for s, _ in scored]


FILTERS = [
    Filters(tenant="t1"),
    Filters(tenant="t2", user_id="u1"),
    Filters(tenant="t1", user_id="u2", roles=(Role.USER, Role.OTHER)),
    Filters(tenant="t1", conversation_ids=("c1", "c3")),
    Filters(tenant="t2", speakers=("Bo",)),
    Filters(tenant="t1", since=1_700_000_000.0 + 600, until=1_700_000_000.0 + 6000),
    Filters(tenant="t1", until=1_700_000_000.0 + 60.0 * 2),  # inclusive bound: uid 1002
    Filters(tenant="nobody"),
]


def test_search_equals_brute_force(make: Callable[[int], VectorIndex]) -> None:
    docs = corpus(300)
    index = make(DIM)
    index.upsert(docs)
    assert len(index) == 300
    rng = np.random.default_rng(7)
    for f in FILTERS:
        for _ in range(5):
            q = rng.standard_normal(DIM).astype(np.float32)
            q /= np.linalg.norm(q)
            got = index.search(q, 10, filters=f, timeout_s=1.0)
            want_ids, want_scores = brute(docs, q, 10, f)
            assert [int(i) for i in got.ids] == want_ids, f
            np.testing.assert_allclose(got.scores, want_scores, rtol=1e-5, atol=1e-6)


def test_upsert_replaces_and_delete_removes(make: Callable[[int], VectorIndex]) -> None:
    docs = corpus(50)
    index = make(DIM)
    index.upsert(docs)
    target = docs[10]
    # re-point doc 10 at doc 20's vector: searching with it must now find both, scoring 1.0
    moved = dataclasses.replace(target, embedding=docs[20].embedding)
    index.upsert([moved])
    assert len(index) == 50
    f = Filters(tenant="t1")
    hits = index.search(docs[20].embedding, 2, filters=f, timeout_s=1.0)
    assert sorted(int(i) for i in hits.ids) == sorted([target.uid, docs[20].uid])
    np.testing.assert_allclose(index.vectors_for([target.uid])[0], docs[20].embedding, rtol=1e-6)
    index.delete([target.uid, docs[20].uid, 999_999])
    assert len(index) == 48
    hits = index.search(docs[20].embedding, 50, filters=f, timeout_s=1.0)
    assert target.uid not in hits.ids and docs[20].uid not in hits.ids


def test_edge_cases(make: Callable[[int], VectorIndex]) -> None:
    index = make(DIM)
    q = corpus(1)[0].embedding
    assert len(index.search(q, 5, filters=Filters(tenant="t1"), timeout_s=1.0)) == 0
    index.upsert(corpus(5))
    assert len(index.search(q, 0, filters=Filters(tenant="t1"), timeout_s=1.0)) == 0
    with pytest.raises(ValueError):
        index.search(np.zeros(DIM + 1, np.float32), 5, filters=Filters(tenant="t1"), timeout_s=1.0)
    bad = dataclasses.replace(corpus(1)[0], embedding=np.zeros(3, np.float32))
    with pytest.raises(ValueError):
        index.upsert([bad])
