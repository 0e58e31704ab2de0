"""Compare two systems query by query: mean of each, difference, and its significance."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from eval.significance import paired_randomization_tests
from eval.ttest import paired_t_test

PerQuery = Mapping[str, Mapping[str, float]]  # query id -> metric -> value
DEFAULT_SEED = 0
DEFAULT_PERMUTATIONS = 10_000


def paired_comparison(
    base: PerQuery,
    other: PerQuery,
    metrics: Sequence[str],
    query_ids: Sequence[str],
    *,
    seed: int = DEFAULT_SEED,
    permutations: int = DEFAULT_PERMUTATIONS,
) -> dict[str, dict[str, float]]:
    """metric -> {base, other, delta (other - base), p (randomisation), p_t (t-test)}.

    Every query id must be scored in both. The randomisation test draws from
    ``np.random.default_rng(seed)``, so the p-values are reproducible. ``p_t`` is NaN for
    fewer than two queries.

    Raises:
        ValueError: no query id, or one that either side lacks.
    """
    if not query_ids:
        raise ValueError("no query to compare")
    missing = [q for q in query_ids if q not in base or q not in other]
    if missing:
        raise ValueError(f"queries not scored on both sides: {missing[:5]}")
    a = np.array([[base[q][m] for m in metrics] for q in query_ids], dtype=np.float64)
    b = np.array([[other[q][m] for m in metrics] for q in query_ids], dtype=np.float64)
    p = paired_randomization_tests(a, b, rng=np.random.default_rng(seed), permutations=permutations)
    out: dict[str, dict[str, float]] = {}
    for j, metric in enumerate(metrics):
        out[metric] = {
            "base": float(a[:, j].mean()),
            "other": float(b[:, j].mean()),
            "delta": float(b[:, j].mean() - a[:, j].mean()),
            "p": float(p[j]),
            "p_t": paired_t_test(a[:, j], b[:, j]) if len(query_ids) >= 2 else math.nan,
        }
    return out
