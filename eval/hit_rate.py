"""Hit@k for one query (trec_eval's ``success_k``); its mean over queries is the hit rate."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from eval._validation import check_k, relevant_grades, retrieved_grades


def _kernel(top_k_grades: npt.NDArray[np.int64]) -> float:
    """1.0 if any of the top k is relevant, else 0.0."""
    return 1.0 if bool(np.any(top_k_grades > 0)) else 0.0


def hit_rate(run: Sequence[str], qrels: Mapping[str, int], *, k: int) -> float:
    r"""Whether at least one relevant document is in the top ``k``.

    .. math::

        \operatorname{Hit@k} = \mathbb{1}\left[\exists\, i \le k : g(\operatorname{run}_i) > 0
        \right]

    Averaged over queries it is the hit rate (success rate) at k, trec_eval's ``success_k``
    and ranx's ``hit_rate``.

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
    return _kernel(retrieved_grades(run, qrels, k))
