"""nDCG@k with graded relevance for one query (Järvelin & Kekäläinen, TOIS 2002)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from eval._validation import check_k, relevant_grades, retrieved_grades


def _dcg(gains: npt.NDArray[np.float64]) -> float:
    """sum_i gains[i] / log2(i + 1), i 1-based."""
    discounts = np.log2(np.arange(2, gains.shape[0] + 2, dtype=np.float64))
    return float(np.sum(gains / discounts))


def _kernel(top_k_grades: npt.NDArray[np.int64], ideal_grades: npt.NDArray[np.int64]) -> float:
    """DCG of the retrieved grades over DCG of the ideal ones (both already cut at k).

    Grades <= 0 give no gain. ``ideal_grades`` must hold at least one grade > 0.
    """
    gains = np.maximum(top_k_grades, 0).astype(np.float64)
    return _dcg(gains) / _dcg(ideal_grades.astype(np.float64))


def ndcg(run: Sequence[str], qrels: Mapping[str, int], *, k: int) -> float:
    r"""Normalised discounted cumulative gain at ``k``.

    .. math::

        \operatorname{DCG@k} = \sum_{i=1}^{k} \frac{g(\operatorname{run}_i)}{\log_2(i + 1)},
        \qquad
        \operatorname{nDCG@k} = \frac{\operatorname{DCG@k}}{\operatorname{IDCG@k}}

    with gain = grade (0 for unjudged or grade <= 0), as trec_eval's ``ndcg_cut_k`` and
    ranx's ``ndcg`` (not the exponential 2^g - 1 gain of Burges et al., ranx's
    ``ndcg_burges``). IDCG@k is the DCG@k of all of the query's relevant grades sorted
    highest first, taken from ``qrels``, not from the run.

    Järvelin, K., & Kekäläinen, J. (2002). Cumulated gain-based evaluation of IR techniques.
    ACM Transactions on Information Systems, 20(4), 422-446.
    https://doi.org/10.1145/582415.582418

    Args:
        run: doc ids, best first, distinct; ties must be resolved before.
        qrels: doc id -> grade; grade > 0 is relevant, and higher is more relevant.
        k: the cutoff, >= 1.

    Raises:
        ValueError: bad ``k`` or ``run``, or ``qrels`` with no relevant document (IDCG is
            then 0: filter such queries out before evaluating).
    """
    k = check_k(k)
    ideal = relevant_grades(qrels)[:k]
    return _kernel(retrieved_grades(run, qrels, k), ideal)
