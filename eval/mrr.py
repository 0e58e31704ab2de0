"""Reciprocal rank at k for one query; its mean over queries is MRR@k (Voorhees, TREC-8)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from eval._validation import check_k, relevant_grades, retrieved_grades


def _kernel(top_k_grades: npt.NDArray[np.int64]) -> float:
    """1 / (1-based position of the first relevant doc), 0.0 when none is in the top k."""
    positions = np.flatnonzero(top_k_grades > 0)
    return 1.0 / (int(positions[0]) + 1) if positions.shape[0] > 0 else 0.0


def reciprocal_rank(run: Sequence[str], qrels: Mapping[str, int], *, k: int) -> float:
    r"""Reciprocal of the rank of the first relevant document within the top ``k``.

    .. math::

        \operatorname{RR@k} = \begin{cases}
            1 / \min\{i \le k : g(\operatorname{run}_i) > 0\} & \text{if one exists} \\
            0 & \text{otherwise}
        \end{cases}

    The mean over queries is the mean reciprocal rank, ``mrr@k`` in ``eval.evaluate``
    (ranx's ``mrr@k``; trec_eval's ``recip_rank`` is the uncut version).

    Voorhees, E. M. (1999). The TREC-8 question answering track report. TREC-8.

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
