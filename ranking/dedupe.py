"""Near-duplicate collapse by cosine similarity (greedy, in rank order)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ranking._checks import check_unique_ids, unit_rows
from ranking.hits import Hits


def _kernel(unit: npt.NDArray[np.float64], threshold: float) -> npt.NDArray[np.bool_]:
    """Mask of the rows kept: row i is kept unless cos(i, j) >= threshold for a kept j < i."""
    n = unit.shape[0]
    keep = np.zeros(n, dtype=bool)
    sims = unit @ unit.T
    for i in range(n):
        keep[i] = not np.any(sims[i, :i][keep[:i]] >= threshold)
    return keep


def dedupe(hits: Hits, vectors: npt.NDArray[np.float32], *, threshold: float = 0.95) -> Hits:
    r"""Drop hits that are near-duplicates of a higher-ranked hit that was kept.

    Walks ``hits`` best first and keeps hit :math:`d_i` unless

    .. math::

        \exists\, j < i \text{ kept}: \cos(\vec{d_i}, \vec{d_j}) =
            \frac{\vec{d_i} \cdot \vec{d_j}}{\lVert\vec{d_i}\rVert\,\lVert\vec{d_j}\rVert}
            \ge \text{threshold}

    so of any near-duplicate pair the higher-ranked survives. The comparison is only with
    hits that were kept (as in non-maximum suppression): if b is dropped as a duplicate of a,
    and c duplicates b but not a, c stays, because its only near-duplicate is gone.

    Args:
        hits: ranked hits, best first, distinct ids.
        vectors: ``(len(hits), dim)`` embeddings, row i for ``hits.ids[i]``; finite,
            non-zero rows (normalised here).
        threshold: cosine at or above which two hits are duplicates, in [-1, 1]. Computed in
            float64: identical vectors give 1.0 up to rounding, so use a value below 1.

    Returns:
        The kept hits, in their original order, with their original scores.

    Raises:
        ValueError: duplicate ids, ``vectors`` of the wrong shape or with a non-finite or
            all-zero row, or ``threshold`` outside [-1, 1].
    """
    if not -1.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [-1, 1], got {threshold!r}")
    check_unique_ids(hits, "hits")
    unit = unit_rows(vectors, len(hits), "vectors")
    keep = _kernel(unit, float(threshold))
    return Hits(hits.ids[keep], hits.scores[keep])
