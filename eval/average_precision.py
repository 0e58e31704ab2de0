"""Average precision for one query (trec_eval's ``map``); its mean over queries is MAP."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from eval._validation import check_k, relevant_grades, retrieved_grades


def _kernel(grades: npt.NDArray[np.int64], n_relevant: int) -> float:
    """sum over relevant positions i of P@i, divided by the number of relevant docs."""
    is_relevant = grades > 0
    hits_so_far = np.cumsum(is_relevant)
    positions = np.arange(1, grades.shape[0] + 1)
    return float(np.sum(hits_so_far[is_relevant] / positions[is_relevant])) / n_relevant


def average_precision(
    run: Sequence[str], qrels: Mapping[str, int], *, k: int | None = None
) -> float:
    r"""Mean of the precision at each relevant retrieved document, over all relevant ones.

    .. math::

        \operatorname{AP} = \frac{1}{|R|} \sum_{i : g(\operatorname{run}_i) > 0}
            \operatorname{P@i}

    where :math:`R` is the set of relevant documents in ``qrels`` (so relevant documents never
    retrieved count as precision 0), over the whole run as trec_eval's ``map`` does. With
    ``k``, only the top ``k`` are read, and the divisor stays :math:`|R|`, as in ranx's
    ``map@k`` (not :math:`\min(k, |R|)`).

    Manning, C. D., Raghavan, P., & Schütze, H. (2008). Introduction to Information
    Retrieval, section 8.4. Cambridge University Press.

    Args:
        run: doc ids, best first, distinct; ties must be resolved before.
        qrels: doc id -> grade; grade > 0 is relevant.
        k: optional cutoff, >= 1 (None: the whole run).

    Raises:
        ValueError: bad ``k`` or ``run``, or ``qrels`` with no relevant document (AP is then
            0/0: filter such queries out before evaluating).
    """
    if k is not None:
        k = check_k(k)
    n_relevant = relevant_grades(qrels).shape[0]
    return _kernel(retrieved_grades(run, qrels, k), n_relevant)
