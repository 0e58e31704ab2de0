"""Paired Student's t-test of two systems' per-query scores (a parametric cross-check).

Smucker, Allan & Carterette (CIKM 2007) found it agrees closely with the randomisation test
on IR metrics; ``eval.significance`` remains the reference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

_EPS = 1e-15
_MAX_ITER = 300


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz's method)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, _MAX_ITER + 1):
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < _EPS:
            break
    return h


def _reg_inc_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularised incomplete beta function, for 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def _kernel(diffs: npt.NDArray[np.float64]) -> float:
    """Two-sided p of t = mean / (sd / sqrt(n)) with n - 1 degrees of freedom."""
    n = diffs.shape[0]
    mean = float(diffs.mean())
    sd = float(diffs.std(ddof=1))
    if sd == 0.0:
        return 1.0 if mean == 0.0 else 0.0
    t = mean / (sd / math.sqrt(n))
    df = n - 1.0
    return _reg_inc_beta(df / 2.0, 0.5, df / (df + t * t))


def paired_t_test(
    a: Sequence[float] | npt.NDArray[np.float64], b: Sequence[float] | npt.NDArray[np.float64]
) -> float:
    r"""Two-sided p-value of the paired t-test on per-query scores ``a`` and ``b``.

    .. math::

        t = \frac{\bar d}{s_d / \sqrt{n}}, \qquad d_q = a_q - b_q, \qquad
        p = I_{\nu / (\nu + t^2)}\left(\tfrac{\nu}{2}, \tfrac{1}{2}\right), \quad \nu = n - 1

    where :math:`I` is the regularised incomplete beta function (the Student-t tail). When
    every difference is equal the test is degenerate: p = 1 if they are all 0, else 0.

    Raises:
        ValueError: mismatched shapes, fewer than 2 queries, or non-finite values.
    """
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or x.shape[0] < 2:
        raise ValueError(f"a and b must be 1-d, the same length, >= 2; got {x.shape}, {y.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("scores must be finite")
    return _kernel(x - y)
