"""The exact scan in chunks: same answer as one pass, and a time limit that truncates it."""

from __future__ import annotations

import dataclasses

import numpy as np

from indexer.faiss_index import FaissVectorIndex
from indexer.models import Filters, Role
from indexer.numpy_index import NumpyVectorIndex
from ranking.hits import Hits
from tests.indexer.test_faiss_ann import DIM, docs


class StepClock:
    """A clock that moves ``step`` seconds each time it is read."""

    def __init__(self, step: float) -> None:
        self.now = 0.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def canonical(hits: Hits) -> list[tuple[float, int]]:
    return sorted((-round(float(s), 5), int(u)) for u, s in zip(hits.ids, hits.scores, strict=True))


def test_chunked_scan_equals_the_reference_with_ties_and_filters() -> None:
    corpus = docs(1000)
    # duplicates across chunk borders: ties must break by uid exactly as in one pass
    for d in corpus[::97]:
        corpus.append(dataclasses.replace(d, uid=d.uid + 5000))
    chunked = FaissVectorIndex(dim=DIM, scan_chunk_rows=64)
    reference = NumpyVectorIndex(dim=DIM)
    for index in (chunked, reference):
        index.upsert(corpus)
        index.delete([d.uid for d in corpus[5:400:7]])
    rng = np.random.default_rng(0)
    filters = [
        Filters(tenant="t"),
        Filters(tenant="t", user_id="u", roles=(Role.USER,), since=100.0, until=900.0),
        Filters(tenant="t", conversation_ids=("c1", "c3")),
    ]
    queries = [corpus[0].embedding, *rng.standard_normal((20, DIM)).astype(np.float32)]
    for f in filters:
        for q in queries:
            q = q / np.linalg.norm(q)
            got = chunked.search(q, 25, filters=f, timeout_s=10)
            want = reference.search(q, 25, filters=f, timeout_s=10)
            assert got.exhaustive
            # BLAS may round one vector's score differently in different chunks (last bit),
            # so compare rankings with scores rounded: ties then break by uid in both.
            assert canonical(got) == canonical(want)
            np.testing.assert_allclose(got.scores, want.scores, rtol=1e-5, atol=1e-6)


def test_scan_stops_at_the_time_limit_and_says_so() -> None:
    corpus = docs(1000)
    # The clock moves 10 ms per read. The start reads 0.01, so a 25 ms limit ends at 0.035;
    # chunk 1 always runs, chunks 2 and 3 read 0.02 and 0.03, chunk 4 reads 0.04 and stops.
    index = FaissVectorIndex(dim=DIM, scan_chunk_rows=100, clock=StepClock(0.010))
    index.upsert(corpus)
    q = corpus[950].embedding  # its best match lies in the last chunk, never reached
    hits = index.search(q, 5, filters=Filters(tenant="t"), timeout_s=0.025)
    assert not hits.exhaustive
    assert len(hits) == 5
    assert corpus[950].uid not in hits.ids.tolist()
    assert set(hits.ids.tolist()) <= set(range(300))
    # the best of what was seen, in order
    seen = np.stack([d.embedding for d in corpus[:300]]) @ q
    assert hits.ids.tolist() == np.argsort(-seen, kind="stable")[:5].tolist()
    # with time to spare the same index scans everything
    full = index.search(q, 5, filters=Filters(tenant="t"), timeout_s=100.0)
    assert full.exhaustive and full.ids[0] == corpus[950].uid
