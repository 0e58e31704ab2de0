"""Score normalisation within one run: min-max (Lee, 1997) and z-score (Montague & Aslam, 2001).

Both bring a retriever's raw scores (BM25, cosine, ...) onto a common scale before a convex
combination (``ranking.convex``). They are computed on one run at a time, in float64.

Degenerate cases, chosen after OpenSearch's ``normalization-processor``:

- Empty input gives empty output.
- All scores equal (including a single score): min-max gives 1.0 to every hit (OpenSearch's
  ``SINGLE_RESULT_SCORE``: a lone hit is its run's best), z-score gives 0.0 to every hit
  (every score sits at the mean). OpenSearch's z-score returns 1.0 for any score equal to the
  mean, in any run; we do not copy that. "All equal" is decided by ``max == min``, not by a
  zero standard deviation, which rounding can leave slightly non-zero.
- Min-max maps the run's minimum to exactly 0.0 (OpenSearch lifts it to 0.001 to tell it from
  "absent"; ``convex`` gives absent documents the run's minimum instead).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def _min_max_kernel(scores: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """(s - min) / (max - min); all ones when max == min; empty stays empty."""
    if scores.shape[0] == 0:
        return scores.copy()
    lo, hi = scores.min(), scores.max()
    if hi == lo:
        return np.ones_like(scores)
    out: npt.NDArray[np.float64] = (scores - lo) / (hi - lo)
    return out


def _z_score_kernel(scores: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """(s - mean) / std with the population std; all zeros when max == min."""
    if scores.shape[0] == 0:
        return scores.copy()
    if scores.max() == scores.min():
        return np.zeros_like(scores)
    out: npt.NDArray[np.float64] = (scores - scores.mean()) / scores.std()
    return out


def _as_scores(scores: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        raise ValueError(f"scores must be a 1-d array, got shape {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite")
    return s


def min_max(scores: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    r"""Min-max normalisation onto [0, 1].

    .. math::

        \hat{s}_i = \frac{s_i - \min_j s_j}{\max_j s_j - \min_j s_j}

    with :math:`\hat{s}_i = 1` for every hit when all scores are equal.

    Lee, J. H. (1997). Analyses of multiple evidence combination. SIGIR '97.

    Args:
        scores: the scores of one run (any order), 1-d and finite.

    Returns:
        float32 array of the same length, in [0, 1].

    Raises:
        ValueError: ``scores`` is not 1-d or has NaN or infinite values.
    """
    return _min_max_kernel(_as_scores(scores)).astype(np.float32)


def z_score(scores: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    r"""Z-score normalisation: distance from the run's mean in standard deviations.

    .. math::

        \hat{s}_i = \frac{s_i - \mu}{\sigma}, \quad
        \mu = \frac{1}{n}\sum_j s_j, \quad
        \sigma = \sqrt{\frac{1}{n}\sum_j (s_j - \mu)^2}

    (population standard deviation, as OpenSearch and ranx's ``zmuv``), with
    :math:`\hat{s}_i = 0` for every hit when all scores are equal.

    Montague, M., & Aslam, J. A. (2001). Relevance score normalization for metasearch.
    CIKM '01.

    Args:
        scores: the scores of one run (any order), 1-d and finite.

    Returns:
        float32 array of the same length (unbounded; mean 0 and std 1 unless degenerate).

    Raises:
        ValueError: ``scores`` is not 1-d or has NaN or infinite values.
    """
    return _z_score_kernel(_as_scores(scores)).astype(np.float32)
