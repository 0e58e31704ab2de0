"""Argument checks and small helpers shared by the ranking functions (private).

Every public function in ``ranking`` validates with these and raises ``ValueError``, never
``assert`` (``python -O`` strips asserts).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from ranking.hits import Hits


def check_unique_ids(hits: Hits, what: str) -> None:
    """A document may appear once per ranking: its position is its rank."""
    if np.unique(hits.ids).shape[0] != len(hits):
        raise ValueError(f"{what} has duplicate ids")


def check_finite_scores(hits: Hits, what: str) -> None:
    if not np.all(np.isfinite(hits.scores)):
        raise ValueError(f"{what} has NaN or infinite scores")


def check_limit(limit: int | None) -> None:
    if limit is None:
        return
    if isinstance(limit, bool) or not isinstance(limit, int | np.integer):
        raise ValueError(f"limit must be an int or None, got {limit!r}")
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")


def check_weights(weights: Sequence[float], n_runs: int) -> npt.NDArray[np.float64]:
    """One finite, non-negative weight per run; returned as float64."""
    if len(weights) != n_runs:
        raise ValueError(f"got {len(weights)} weights for {n_runs} runs")
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"weights must be finite and >= 0, got {list(weights)}")
    return w


def rank_by_score(
    ids: npt.NDArray[np.int64], scores: npt.NDArray[np.float64], limit: int | None
) -> Hits:
    """Sort by score descending, then id ascending; keep the first ``limit``.

    The order is decided on the float64 scores, before the cast to ``Hits``' float32.
    """
    order = np.lexsort((ids, -scores))
    if limit is not None:
        order = order[:limit]
    return Hits(ids[order].astype(np.int64, copy=False), scores[order].astype(np.float32))


def unit_rows(vectors: npt.NDArray[np.float32], n_rows: int, what: str) -> npt.NDArray[np.float64]:
    """Check ``vectors`` is ``(n_rows, dim)``, finite and non-zero; return rows scaled to norm 1.

    Cosine similarity is then a dot product: cos(u, v) = u . v / (|u| |v|).
    """
    v = np.asarray(vectors, dtype=np.float64)
    if v.ndim != 2 or v.shape[0] != n_rows or v.shape[1] == 0:
        raise ValueError(
            f"{what} must have shape (len(hits), dim) = ({n_rows}, dim), got {v.shape}"
        )
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{what} has NaN or infinite values")
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError(f"{what} has an all-zero row: its cosine similarity is undefined")
    unit: npt.NDArray[np.float64] = v / norms
    return unit
