"""The FAISS HNSW path: recall against exact search, tombstones, rows added after the build."""

from __future__ import annotations

import dataclasses

import numpy as np

from indexer.faiss_index import FaissVectorIndex
from indexer.models import Filters, IndexDoc, Role

DIM = 32


def docs(n: int, start: int = 0, seed: int = 0) -> list[IndexDoc]:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return [
        IndexDoc(
            uid=start + i,
            tenant="t",
            user_id="u",
            conversation_id=f"c{i % 5}",
            speaker="Ann" if i % 2 else "Agent",
            role=Role.USER if i % 2 else Role.AGENT,
            started_at=float(i),
            text="",
            embedding=v[i],
        )
        for i in range(n)
    ]


def test_hnsw_recall_tombstones_and_fresh_rows() -> None:
    corpus = docs(4000)
    exact = FaissVectorIndex(dim=DIM)
    ann = FaissVectorIndex(dim=DIM, ann_threshold=1000)
    for index in (exact, ann):
        index.upsert(corpus)
    assert ann.maybe_build_ann() == 1 and exact.maybe_build_ann() == 0
    assert ann.maybe_build_ann() == 0  # nothing changed: no rebuild

    deleted = [d.uid for d in corpus[:200]]
    fresh = docs(50, start=10_000, seed=1)
    for index in (exact, ann):
        index.delete(deleted)
        index.upsert(fresh)

    rng = np.random.default_rng(3)
    recalls = []
    for f in (Filters(tenant="t"), Filters(tenant="t", user_id="u", roles=(Role.USER,))):
        for _ in range(40):
            q = rng.standard_normal(DIM).astype(np.float32)
            q /= np.linalg.norm(q)
            want = set(exact.search(q, 10, filters=f, timeout_s=1).ids.tolist())
            got = ann.search(q, 10, filters=f, timeout_s=1).ids.tolist()
            assert not set(got) & set(deleted)
            recalls.append(len(want & set(got)) / 10)
    assert float(np.mean(recalls)) >= 0.95
    # a row appended after the build is found (its own vector is its best match)
    probe = fresh[7]
    assert (
        ann.search(probe.embedding, 1, filters=Filters(tenant="t"), timeout_s=1).ids[0] == probe.uid
    )
    # an upsert that replaces a row in the graph: the old vector is no longer returned
    moved = dataclasses.replace(corpus[500], embedding=fresh[0].embedding)
    ann.upsert([moved])
    hits = ann.search(corpus[500].embedding, 3, filters=Filters(tenant="t"), timeout_s=1)
    assert corpus[500].uid not in hits.ids[:1] or hits.scores[0] < 0.999
