"""Re-order the head of a ranking by a second, sharper score (a cross-encoder's).

Only the first ``len(head_scores)`` hits are re-scored; within that head

    combined(d) = (1 − weight) · minmax(first-stage scores)(d) + weight · minmax(head_scores)(d)

decides the new order (ties: the earlier first-stage rank first). The head's ids move; the
score *values* at each rank stay as they were, so the result is still ordered by score, on the
first stage's scale, and the tail (which the second score never saw) keeps its place below.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ranking._checks import check_finite_scores, check_unique_ids
from ranking.hits import Hits
from ranking.normalize import _min_max_kernel


def rerank_head(hits: Hits, head_scores: npt.ArrayLike, *, weight: float = 1.0) -> Hits:
    """``hits`` (best first) with its first ``len(head_scores)`` re-ordered as above.

    ``weight`` in [0, 1]: 1 orders the head by ``head_scores`` alone, 0 leaves it as it is.
    """
    check_unique_ids(hits, "hits")
    check_finite_scores(hits, "hits")
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be in [0, 1], got {weight}")
    second = np.asarray(head_scores, dtype=np.float64).reshape(-1)
    n = second.shape[0]
    if n > len(hits):
        raise ValueError(f"{n} head scores for {len(hits)} hits")
    if not np.all(np.isfinite(second)):
        raise ValueError("head_scores must be finite")
    if n <= 1:
        return hits
    first = hits.scores[:n].astype(np.float64)
    combined = (1 - weight) * _min_max_kernel(first) + weight * _min_max_kernel(second)
    order = np.lexsort((np.arange(n), -combined))  # ties: the earlier rank first
    ids = hits.ids.copy()
    ids[:n] = hits.ids[:n][order]
    return Hits(ids, hits.scores.copy(), hits.exhaustive)
