"""Maximal Marginal Relevance re-ranking (Carbonell & Goldstein, SIGIR 1998)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ranking._checks import check_finite_scores, check_limit, check_unique_ids, unit_rows
from ranking.hits import Hits
from ranking.normalize import _min_max_kernel


def _kernel(
    relevance: npt.NDArray[np.float64],
    unit: npt.NDArray[np.float64],
    lambda_: float,
    limit: int,
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float64]]:
    """Greedy MMR selection.

    ``relevance[i]`` is in [0, 1] and ``unit[i]`` is the L2-normalised vector of candidate i
    (candidates in their input order). Returns the positions picked, in pick order, and the
    MMR value of each at the time it was picked. Ties go to the earlier position.
    """
    n = relevance.shape[0]
    m = min(limit, n)
    picked = np.empty(m, dtype=np.intp)
    values = np.empty(m, dtype=np.float64)
    available = np.ones(n, dtype=bool)
    max_sim = np.zeros(n, dtype=np.float64)
    for t in range(m):
        mmr = lambda_ * relevance
        if t > 0:
            mmr = mmr - (1.0 - lambda_) * max_sim
        mmr = np.where(available, mmr, -np.inf)
        j = int(np.argmax(mmr))  # first maximum: the higher-ranked candidate wins a tie
        picked[t] = j
        values[t] = mmr[j]
        available[j] = False
        sims = unit @ unit[j]
        max_sim = sims if t == 0 else np.maximum(max_sim, sims)
    return picked, values


def mmr(
    hits: Hits,
    vectors: npt.NDArray[np.float32],
    *,
    lambda_: float = 0.7,
    limit: int,
) -> Hits:
    r"""Re-rank ``hits`` for relevance and novelty with Maximal Marginal Relevance.

    Picks greedily, each time the candidate that maximises

    .. math::

        \operatorname{MMR}(d) = \lambda\, \operatorname{rel}(d)
            - (1 - \lambda) \max_{d' \in S} \cos(\vec{d}, \vec{d'})

    where :math:`S` is the set already picked (the penalty is 0 while it is empty),
    :math:`\cos` is the cosine similarity of the documents' ``vectors`` (Carbonell and
    Goldstein's Sim2), and :math:`\operatorname{rel}(d)` (their Sim1) is ``hits.scores``
    min-max normalised to [0, 1] (all equal: 1.0), rather than a query-document cosine, so
    that MMR keeps whatever relevance produced ``hits`` (for example fused RRF scores).
    :math:`\lambda = 1` keeps the input order; :math:`\lambda = 0` maximises novelty only.

    Carbonell, J., & Goldstein, J. (1998). The use of MMR, diversity-based reranking for
    reordering documents and producing summaries. SIGIR '98, 335-336.
    https://doi.org/10.1145/290941.291025

    Args:
        hits: candidates, best first, distinct ids, finite scores.
        vectors: ``(len(hits), dim)`` embeddings, row i for ``hits.ids[i]``; rows need not be
            normalised but must be finite and non-zero.
        lambda_: the trade-off :math:`\lambda`, in [0, 1].
        limit: how many to pick, >= 0 (fewer when there are fewer candidates).

    Returns:
        The picked hits in pick order. Each score is the MMR value at the time of the pick;
        these never increase from one pick to the next, since the penalty only grows.
        Ties go to the candidate ranked higher in ``hits``.

    Raises:
        ValueError: duplicate ids, non-finite scores, ``vectors`` of the wrong shape or with
            a non-finite or all-zero row, ``lambda_`` outside [0, 1], or ``limit`` None or < 0.
    """
    if limit is None:
        raise ValueError("limit is required")
    check_limit(limit)
    if not 0.0 <= lambda_ <= 1.0:
        raise ValueError(f"lambda_ must be in [0, 1], got {lambda_!r}")
    check_unique_ids(hits, "hits")
    check_finite_scores(hits, "hits")
    unit = unit_rows(vectors, len(hits), "vectors")
    relevance = _min_max_kernel(hits.scores.astype(np.float64))
    picked, values = _kernel(relevance, unit, float(lambda_), int(limit))
    return Hits(hits.ids[picked], values.astype(np.float32))
