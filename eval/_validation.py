"""Argument checks shared by the per-query metrics (private).

A run for one query is a ranked ``Sequence[str]`` of doc ids, best first; qrels for one query
are a ``Mapping[str, int]`` of graded judgments, grade > 0 meaning relevant. Every check
raises ``ValueError`` (never ``assert``, which ``python -O`` strips).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt


def check_k(k: int) -> int:
    """A cutoff is an int >= 1."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    return int(k)


def check_run(run: Sequence[str]) -> None:
    """Doc ids are strings, each at most once (its position is its rank)."""
    if isinstance(run, str):
        raise ValueError("run must be a sequence of doc ids, not a single string")
    if not all(isinstance(doc_id, str) for doc_id in run):
        raise ValueError("run doc ids must be strings")
    if len(set(run)) != len(run):
        raise ValueError("run has duplicate doc ids")


def relevant_grades(qrels: Mapping[str, int]) -> npt.NDArray[np.int64]:
    """The grades > 0 of ``qrels``, highest first; at least one is required.

    Raises ``ValueError`` for non-string ids, non-int grades, or no relevant document (the
    metrics are undefined, or meaningless, without one: filter such queries out first).
    """
    for doc_id, grade in qrels.items():
        if not isinstance(doc_id, str):
            raise ValueError(f"qrels doc ids must be strings, got {doc_id!r}")
        if isinstance(grade, bool) or not isinstance(grade, numbers.Integral):
            raise ValueError(f"qrels grades must be ints, got {grade!r} for {doc_id!r}")
    grades = np.array([g for g in qrels.values() if g > 0], dtype=np.int64)
    if grades.shape[0] == 0:
        raise ValueError("qrels have no relevant document (grade > 0)")
    return -np.sort(-grades)


def retrieved_grades(
    run: Sequence[str], qrels: Mapping[str, int], k: int | None
) -> npt.NDArray[np.int64]:
    """Grades of the first ``k`` retrieved docs (all when None), 0 for unjudged ones."""
    check_run(run)
    top = run if k is None else run[:k]
    return np.array([qrels.get(doc_id, 0) for doc_id in top], dtype=np.int64)
