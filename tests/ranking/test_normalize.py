import numpy as np
import pytest

from ranking import min_max, z_score
from ranking.normalize import _z_score_kernel


def f32(values: list[float]) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def test_min_max():
    # min 1, max 3: (1-1)/2 = 0, (3-1)/2 = 1, (2-1)/2 = 0.5
    out = min_max(f32([1.0, 3.0, 2.0]))
    np.testing.assert_allclose(out, [0.0, 1.0, 0.5])
    assert out.dtype == np.float32


def test_min_max_negative_scores():
    # min -2, max 2: 0/4, 2/4, 4/4
    np.testing.assert_allclose(min_max(f32([-2.0, 0.0, 2.0])), [0.0, 0.5, 1.0])


def test_min_max_all_equal_is_one():
    np.testing.assert_array_equal(min_max(f32([5.0, 5.0])), [1.0, 1.0])
    np.testing.assert_array_equal(min_max(f32([2.0])), [1.0])


def test_z_score():
    # mean 2, population std sqrt(((1-2)^2 + 0 + (3-2)^2) / 3) = sqrt(2/3) = 0.8164966
    # (1-2)/0.8164966 = -1.2247449, 0, +1.2247449
    out = z_score(f32([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(out, [-1.2247449, 0.0, 1.2247449], rtol=1e-6)
    assert out.dtype == np.float32


def test_z_score_all_equal_is_zero():
    np.testing.assert_array_equal(z_score(f32([4.0, 4.0, 4.0])), [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(z_score(f32([4.0])), [0.0])


def test_z_score_all_equal_despite_rounding():
    # 103 copies of this float64 value have mean != value by one ulp, so np.std is
    # 8.9e-16, not 0; dividing by it would give -1 for every hit instead of 0.
    scores = np.full(103, 6.369616873214543)
    assert scores.std() > 0
    np.testing.assert_array_equal(_z_score_kernel(scores), np.zeros(103))


@pytest.mark.parametrize("normalise", [min_max, z_score])
def test_empty(normalise):
    out = normalise(np.empty(0, dtype=np.float32))
    assert out.shape == (0,)
    assert out.dtype == np.float32


@pytest.mark.parametrize("normalise", [min_max, z_score])
@pytest.mark.parametrize(
    "scores",
    [
        np.array([1.0, np.nan], dtype=np.float32),
        np.array([1.0, np.inf], dtype=np.float32),
        np.ones((2, 2), dtype=np.float32),
    ],
)
def test_bad_input(normalise, scores):
    with pytest.raises(ValueError):
        normalise(scores)
