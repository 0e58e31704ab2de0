"""Recall@k for one query (the retrieval metric of LoCoMo, Maharana et al., ACL 2024)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from eval._validation import check_k, relevant_grades, retrieved_grades


def _kernel(top_k_grades: npt.NDArray[np.int64], n_relevant: int) -> float:
    """|relevant in top k| / |relevant|."""
    return int(np.count_nonzero(top_k_grades > 0)) / n_relevant


def recall(run: Sequence[str], qrels: Mapping[str, int], *, k: int) -> float:
    r"""Fraction of the relevant documents found in the top ``k``.

    .. math::

        \operatorname{Recall@k} = \frac{|\{d \in \operatorname{run}_{1..k} : g(d) > 0\}|}
                                       {|\{d : g(d) > 0\}|}

    where :math:`g(d)` is the grade in ``qrels`` (0 when unjudged). This is the retrieval
    accuracy LoCoMo reports over the evidence dialogue turns of each question, and
    trec_eval's ``recall_k``.

    Maharana, A., Lee, D.-H., Tulyakov, S., Bansal, M., Barbieri, F., & Fang, Y. (2024).
    Evaluating very long-term conversational memory of LLM agents. ACL 2024.

    Args:
        run: doc ids, best first, distinct; ties must be resolved before.
        qrels: doc id -> grade; grade > 0 is relevant.
        k: the cutoff, >= 1.

    Raises:
        ValueError: bad ``k`` or ``run``, or ``qrels`` with no relevant document (recall is
            then 0/0: filter such queries out before evaluating).
    """
    k = check_k(k)
    n_relevant = relevant_grades(qrels).shape[0]
    return _kernel(retrieved_grades(run, qrels, k), n_relevant)
