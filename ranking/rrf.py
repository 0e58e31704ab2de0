"""Reciprocal Rank Fusion (Cormack, Clarke & Büttcher, SIGIR 2009)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from ranking._checks import check_limit, check_unique_ids, check_weights, rank_by_score
from ranking.hits import Hits


def _kernel(
    runs: Sequence[npt.NDArray[np.int64]], weights: npt.NDArray[np.float64], k: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Fused score of every id that appears in a run: sum over runs of w_r / (k + rank_r).

    Returns the distinct ids (ascending) and their scores. Each document's contributions are
    added in ascending order, so two documents with the same multiset of (weight, rank) get
    bit-identical sums and the id tie-break in the caller applies to them.
    """
    if not runs or sum(r.shape[0] for r in runs) == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
    all_ids = np.concatenate(runs)
    contrib = np.concatenate(
        [
            w / (k + np.arange(1, r.shape[0] + 1, dtype=np.float64))
            for r, w in zip(runs, weights, strict=True)
        ]
    )
    distinct, inverse = np.unique(all_ids, return_inverse=True)
    order = np.lexsort((contrib, inverse))
    # bincount adds its weights sequentially, here in ascending order within each id.
    scores = np.bincount(
        inverse[order], weights=contrib[order], minlength=distinct.shape[0]
    ).astype(np.float64, copy=False)
    return distinct.astype(np.int64, copy=False), scores


def rrf(
    runs: Sequence[Hits],
    *,
    k: int = 60,
    weights: Sequence[float] | None = None,
    limit: int | None = None,
) -> Hits:
    r"""Fuse rankings with Reciprocal Rank Fusion.

    .. math::

        \operatorname{RRF}(d) = \sum_{r \in R,\ d \in r} \frac{w_r}{k + \operatorname{rank}_r(d)}

    where :math:`\operatorname{rank}_r(d)` is the 1-based position of ``d`` in run ``r``
    (scores are not used, only the order) and :math:`w_r = 1` unless ``weights`` are given
    (weighted RRF, as in ranx and Elasticsearch). A document absent from a run gets nothing
    from it.

    Cormack, G. V., Clarke, C. L. A., & Büttcher, S. (2009). Reciprocal rank fusion
    outperforms Condorcet and individual rank learning methods. SIGIR '09, 758-759.
    https://doi.org/10.1145/1571941.1572114

    Args:
        runs: rankings to fuse, each best first with distinct ids. An empty run, or no runs,
            contributes nothing.
        k: the smoothing constant (60 in the paper), an int >= 0.
        weights: one finite weight >= 0 per run; a run weighted 0 is left out entirely
            (its documents do not appear unless another run has them).
        limit: keep at most this many hits (None: all).

    Returns:
        Every document of the (non-zero-weight) runs, by fused score descending, ties broken
        by id ascending. Scores are computed in float64 and returned as float32.

    Raises:
        ValueError: a run has duplicate ids, ``k`` < 0, ``limit`` < 0, or ``weights`` has the
            wrong length or a negative or non-finite value.
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 0:
        raise ValueError(f"k must be an int >= 0, got {k!r}")
    check_limit(limit)
    w = check_weights([1.0] * len(runs) if weights is None else weights, len(runs))
    for i, run in enumerate(runs):
        check_unique_ids(run, f"runs[{i}]")
    kept = [i for i in range(len(runs)) if w[i] > 0]
    ids, scores = _kernel([runs[i].ids for i in kept], w[kept], int(k))
    return rank_by_score(ids, scores, limit)
