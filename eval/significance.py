"""Paired randomisation (permutation) test of two systems' per-query scores.

Smucker, M. D., Allan, J., & Carterette, B. (2007). A comparison of statistical significance
tests for information retrieval evaluation. CIKM 2007. https://doi.org/10.1145/1321440.1321528
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

_CHUNK = 1000  # permutations drawn per batch, to bound memory
_TOL = 1e-12  # |t*| >= |t| - _TOL counts as "as extreme": ties must count despite rounding


def _exact_kernel(diffs: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """p-values over all 2**n sign vectors; ``diffs`` is (n queries, m metrics)."""
    n = diffs.shape[0]
    codes = np.arange(2**n, dtype=np.int64)[:, None] >> np.arange(n, dtype=np.int64)[None, :]
    signs = 1.0 - 2.0 * (codes & 1).astype(np.float64)
    observed = np.abs(diffs.mean(axis=0))
    permuted = np.abs(signs @ diffs) / n
    extreme = permuted >= observed - _TOL
    p: npt.NDArray[np.float64] = extreme.mean(axis=0)
    return p


def _sampled_kernel(
    diffs: npt.NDArray[np.float64], permutations: int, rng: np.random.Generator
) -> npt.NDArray[np.float64]:
    """(1 + #extreme) / (1 + permutations) over random sign vectors (Phipson & Smyth 2010)."""
    n = diffs.shape[0]
    observed = np.abs(diffs.mean(axis=0))
    extreme = np.zeros(diffs.shape[1], dtype=np.int64)
    done = 0
    while done < permutations:
        size = min(_CHUNK, permutations - done)
        signs = 1.0 - 2.0 * rng.integers(0, 2, size=(size, n)).astype(np.float64)
        permuted = np.abs(signs @ diffs) / n
        extreme += np.count_nonzero(permuted >= observed - _TOL, axis=0)
        done += size
    p: npt.NDArray[np.float64] = (extreme + 1) / (permutations + 1)
    return p


def paired_randomization_tests(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    *,
    rng: np.random.Generator,
    permutations: int = 10_000,
) -> npt.NDArray[np.float64]:
    r"""Two-sided p-values of a paired randomisation test, one per column.

    ``a`` and ``b`` are (n queries,) or (n queries, m metrics) arrays of two systems' scores
    on the same queries, row for row. Under the null hypothesis the two systems are
    exchangeable, so each query's difference :math:`d_q = a_q - b_q` is equally likely to
    have either sign. With :math:`t = |\bar d|` the test statistic,

    .. math::

        p = \Pr_{s \in \{-1, 1\}^n}\left[\,\left|\tfrac{1}{n}\textstyle\sum_q s_q d_q\right|
            \ge t\,\right]

    computed exactly over all :math:`2^n` sign vectors when :math:`2^n \le`
    ``permutations``, else estimated from ``permutations`` random ones as
    :math:`(1 + \#\{\text{as extreme}\}) / (1 + \text{permutations})` (so never 0). The same
    sign vectors serve every column, so the result does not depend on the column order, and
    swapping ``a`` and ``b`` gives the same p-values.

    Args:
        a, b: scores per query (and metric), the same shape, finite.
        rng: the source of the random sign vectors (seed it for reproducible p-values).
        permutations: how many random sign vectors to draw, >= 1.

    Returns:
        p-values, shape (m,) (a 1-d input gives shape (1,)).

    Raises:
        ValueError: mismatched or empty shapes, non-finite values, or bad ``permutations``.
    """
    if isinstance(permutations, bool) or not isinstance(permutations, int) or permutations < 1:
        raise ValueError(f"permutations must be an int >= 1, got {permutations!r}")
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim not in (1, 2) or x.shape[0] == 0:
        raise ValueError(f"a and b must have the same non-empty shape, got {x.shape}, {y.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("scores must be finite")
    diffs = (x - y).reshape(x.shape[0], -1)
    n = diffs.shape[0]
    if n < 63 and 2**n <= permutations:
        return _exact_kernel(diffs)
    return _sampled_kernel(diffs, permutations, rng)


def paired_randomization_test(
    a: Sequence[float] | npt.NDArray[np.float64],
    b: Sequence[float] | npt.NDArray[np.float64],
    *,
    rng: np.random.Generator,
    permutations: int = 10_000,
) -> float:
    """The p-value of ``paired_randomization_tests`` for one metric (1-d ``a`` and ``b``)."""
    if np.ndim(a) != 1:
        raise ValueError("a and b must be 1-d sequences of per-query scores")
    return float(paired_randomization_tests(a, b, rng=rng, permutations=permutations)[0])
