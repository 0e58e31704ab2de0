"""Precision@k for one query (trec_eval's ``P_k``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from eval._validation import check_k, relevant_grades, retrieved_grades


def _kernel(top_k_grades: npt.NDArray[np.int64], k: int) -> float:
    """|relevant in top k| / k."""
    return int(np.count_nonzero(top_k_grades > 0)) / k


def precision(run: Sequence[str], qrels: Mapping[str, int], *, k: int) -> float:
    r"""Fraction of the top ``k`` positions that hold a relevant document.

    .. math::

        \operatorname{P@k} = \frac{|\{d \in \operatorname{run}_{1..k} : g(d) > 0\}|}{k}

    The divisor is ``k`` even when the run is shorter, as trec_eval's ``P_k`` does (a run
    that returns fewer than k documents is charged for the empty slots).

    Args:
        run: doc ids, best first, distinct; ties must be resolved before.
        qrels: doc id -> grade; grade > 0 is relevant.
        k: the cutoff, >= 1.

    Raises:
        ValueError: bad ``k`` or ``run``, or ``qrels`` with no relevant document (every metric
            here requires one, so that all are averaged over the same queries).
    """
    k = check_k(k)
    relevant_grades(qrels)
    return _kernel(retrieved_grades(run, qrels, k), k)
