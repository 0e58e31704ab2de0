"""Convex combination of normalised scores (Bruch, Gai & Ingber, TOIS 2023)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

from ranking._checks import (
    check_finite_scores,
    check_limit,
    check_unique_ids,
    check_weights,
    rank_by_score,
)
from ranking.hits import Hits
from ranking.normalize import _min_max_kernel, _z_score_kernel

_NORMS: dict[str, Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]]] = {
    "min_max": _min_max_kernel,
    "z_score": _z_score_kernel,
}


def _kernel(
    runs: Sequence[tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]],
    weights: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Weighted mean over runs of already-normalised scores, absent documents at the run's min.

    ``runs`` are non-empty (ids, normalised scores) pairs and ``weights`` are > 0, one each.
    Returns the distinct ids (ascending) and their combined scores.
    """
    if not runs:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
    distinct = np.unique(np.concatenate([ids for ids, _ in runs]))
    total = np.zeros(distinct.shape[0], dtype=np.float64)
    for (ids, scores), w in zip(runs, weights, strict=True):
        column = np.full(distinct.shape[0], scores.min(), dtype=np.float64)
        column[np.searchsorted(distinct, ids)] = scores
        total += w * column
    combined: npt.NDArray[np.float64] = total / weights.sum()
    return distinct.astype(np.int64, copy=False), combined


def convex(
    runs: Sequence[Hits],
    *,
    weights: Sequence[float],
    norm: Literal["min_max", "z_score"] = "min_max",
    limit: int | None = None,
) -> Hits:
    r"""Fuse runs by a weighted mean of their normalised scores.

    .. math::

        \operatorname{score}(d) = \frac{\sum_r w_r\, \phi_r(d)}{\sum_r w_r}, \qquad
        \phi_r(d) = \begin{cases}
            \operatorname{norm}(s_r)(d) & d \in r \\
            \min_{d' \in r} \operatorname{norm}(s_r)(d') & d \notin r
        \end{cases}

    where ``norm`` is min-max or z-score over the run's scores (``ranking.normalize``; see its
    degenerate cases). With two runs and weights (alpha, 1 - alpha) this is Bruch et al.'s
    convex combination alpha * phi(lexical) + (1 - alpha) * phi(semantic).

    A document missing from a run gets that run's normalised minimum (0.0 for min-max, the
    lowest z for z-score), as if it ranked last there: the run did not vouch for it. This is
    ranx's ``wsum`` over min-max scores. It differs from OpenSearch's ``arithmetic_mean``,
    which drops the missing sub-query from the mean (numerator and weights), so a document
    found by one retriever alone is not penalised there.

    Dividing by the sum of weights (OpenSearch's weighted arithmetic mean) makes the weights
    relative: (1, 3) is (0.25, 0.75). A run with weight 0, or with no hits (a retriever that
    found nothing or ran out of time), is left out, weight included, so the scores stay on the
    normalised scale of the runs that remain.

    Bruch, S., Gai, S., & Ingber, A. (2023). An analysis of fusion functions for hybrid
    retrieval. ACM Transactions on Information Systems, 42(1). https://doi.org/10.1145/3596512

    Args:
        runs: the runs to fuse, each with distinct ids and finite scores (order unused).
        weights: one finite weight >= 0 per run, not all zero.
        norm: ``"min_max"`` or ``"z_score"``.
        limit: keep at most this many hits (None: all).

    Returns:
        Every document of the kept runs, by combined score descending, ties broken by id
        ascending. Scores are computed in float64 and returned as float32. Empty when every
        run is empty.

    Raises:
        ValueError: a run has duplicate ids or non-finite scores, ``weights`` has the wrong
            length, a negative or non-finite value, or sums to 0, ``norm`` is unknown, or
            ``limit`` < 0.
    """
    if norm not in _NORMS:
        raise ValueError(f"norm must be 'min_max' or 'z_score', got {norm!r}")
    check_limit(limit)
    w = check_weights(weights, len(runs))
    if len(runs) > 0 and w.sum() == 0:
        raise ValueError("weights must not all be 0")
    for i, run in enumerate(runs):
        check_unique_ids(run, f"runs[{i}]")
        check_finite_scores(run, f"runs[{i}]")
    normalise = _NORMS[norm]
    kept = [i for i in range(len(runs)) if w[i] > 0 and len(runs[i]) > 0]
    normalised = [(runs[i].ids, normalise(runs[i].scores.astype(np.float64))) for i in kept]
    ids, scores = _kernel(normalised, w[kept])
    return rank_by_score(ids, scores, limit)
