"""Recall against exact search, for the scale benchmark: pure numpy, no I/O.

Dense: the exact top-k is an inner-product scan over the scope's rows. A tier's answer is
scored tie-aware (the convention of ANN benchmarks): a returned id counts when its exact
score reaches the k-th best exact score, less ``eps``, so an exact tier that breaks a tie
between identical vectors another way still scores 1.0.

    recall@k = |{r ∈ returned[:k] : s(r) ≥ s_(k) − eps}| / min(k, |scope|)

Lexical: the overlap of a tier's top-k with the reference top-k (the in-process BM25),
``|A ∩ B| / |B|``, over the queries whose reference is not empty.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

#: query vectors scored against this many corpus rows at a time
_CHUNK = 65_536


def exact_kth_scores(
    vectors: npt.NDArray[np.float32],
    rows: npt.NDArray[np.int64],
    queries: npt.NDArray[np.float32],
    k: int,
) -> npt.NDArray[np.float32]:
    """For each query, the k-th best inner product over ``vectors[rows]`` (or the worst
    one when the scope holds fewer than ``k`` rows)."""
    if k < 1 or not len(rows):
        raise ValueError(f"need k >= 1 and a non-empty scope, got k={k}, {len(rows)} rows")
    kk = min(k, len(rows))
    best = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    for i in range(0, len(rows), _CHUNK):
        scores = queries @ vectors[rows[i : i + _CHUNK]].T  # (queries, chunk)
        both = np.concatenate([best, scores], axis=1)
        take = min(kk, both.shape[1])
        best = -np.partition(-both, take - 1, axis=1)[:, :take]
    return np.asarray(best.min(axis=1), dtype=np.float32)


def dense_recall(
    vectors: npt.NDArray[np.float32],
    rows: npt.NDArray[np.int64],
    queries: npt.NDArray[np.float32],
    returned: Sequence[Sequence[int]],
    *,
    k: int,
    uid_offset: int = 1,
    eps: float = 1e-4,
) -> float:
    """Mean tie-aware recall@k of ``returned`` (uids; row = uid − ``uid_offset``) against an
    exact scan of ``vectors[rows]``. A uid outside the scope counts as a miss."""
    if len(returned) != len(queries):
        raise ValueError(f"{len(returned)} answers for {len(queries)} queries")
    kth = exact_kth_scores(vectors, rows, queries, k)
    in_scope = np.zeros(len(vectors), dtype=bool)
    in_scope[rows] = True
    denom = min(k, len(rows))
    total = 0.0
    for q, ids, floor in zip(queries, returned, kth, strict=True):
        r = np.asarray(list(ids)[:k], dtype=np.int64) - uid_offset
        r = r[(r >= 0) & (r < len(vectors))]
        r = r[in_scope[r]]
        total += int(np.count_nonzero(vectors[r] @ q >= floor - eps)) / denom
    return total / len(queries)


def overlap(
    returned: Sequence[Sequence[int]], reference: Sequence[Sequence[int]], *, k: int
) -> float | None:
    """Mean ``|returned[:k] ∩ reference[:k]| / |reference[:k]|`` over queries whose reference
    is not empty; None when every reference is empty."""
    if len(returned) != len(reference):
        raise ValueError(f"{len(returned)} answers for {len(reference)} references")
    scores = [
        len(set(list(a)[:k]) & set(list(b)[:k])) / len(list(b)[:k])
        for a, b in zip(returned, reference, strict=True)
        if len(b)
    ]
    return sum(scores) / len(scores) if scores else None
