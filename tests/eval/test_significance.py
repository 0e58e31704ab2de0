"""Paired randomisation test and paired t-test: hand-checkable cases."""

import math

import numpy as np
import pytest

from eval.significance import paired_randomization_test, paired_randomization_tests
from eval.ttest import paired_t_test


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_identical_systems_have_p_one():
    a = [0.1, 0.5, 0.9, 0.0, 1.0] * 10  # 50 queries: sampled, not exact
    assert paired_randomization_test(a, a, rng=rng()) == 1.0
    assert paired_t_test(a, a) == 1.0


def test_exact_test_on_four_equal_differences():
    # 2**4 = 16 sign vectors; only all-plus and all-minus reach |mean| = 1: p = 2/16.
    assert paired_randomization_test([1, 1, 1, 1], [0, 0, 0, 0], rng=rng()) == 0.125


def test_exact_test_counts_ties_as_extreme():
    # diffs (1, -1): the means of the 4 sign vectors are 0, 0, 1, -1; observed |mean| = 0.
    assert paired_randomization_test([1, 0], [0, 1], rng=rng()) == 1.0
    # diffs (2, 1): |means| 1.5, 0.5, 0.5, 1.5; observed 1.5 -> p = 2/4.
    assert paired_randomization_test([2, 1], [0, 0], rng=rng()) == 0.5


def test_large_consistent_difference_is_significant():
    r = rng(1)
    a = r.random(200)
    b = a + 0.2 + r.normal(0, 0.05, 200)
    p = paired_randomization_test(a, b, rng=rng())
    assert p < 0.01
    assert p == pytest.approx(1 / 10_001)  # no permutation is as extreme: the floor
    assert paired_t_test(a, b) < 0.01


def test_no_difference_in_mean_is_not_significant():
    r = rng(2)
    a = r.random(300)
    b = r.permutation(a)  # same values, reshuffled: mean difference exactly 0
    assert paired_randomization_test(a, b, rng=rng()) > 0.9


def test_symmetric_in_the_two_systems():
    r = rng(3)
    a, b = r.random(40), r.random(40)
    assert paired_randomization_test(a, b, rng=rng(7)) == paired_randomization_test(
        b, a, rng=rng(7)
    )
    assert paired_t_test(a, b) == pytest.approx(paired_t_test(b, a))


def test_seeded_rng_is_reproducible_and_columns_are_independent_of_order():
    r = rng(4)
    a, b = r.random((60, 3)), r.random((60, 3))
    p = paired_randomization_tests(a, b, rng=rng(5))
    assert np.array_equal(p, paired_randomization_tests(a, b, rng=rng(5)))
    swapped = paired_randomization_tests(a[:, ::-1], b[:, ::-1], rng=rng(5))
    assert np.array_equal(p, swapped[::-1])
    one = paired_randomization_test(a[:, 1], b[:, 1], rng=rng(5))
    assert one == p[1]


def test_sampled_p_is_close_to_exact():
    r = rng(6)
    a, b = r.random(12), r.random(12)  # 4096 sign vectors: exact with 10,000 permutations
    exact = paired_randomization_test(a, b, rng=rng())
    sampled = paired_randomization_test(a, b, rng=rng(), permutations=4095)  # forces sampling
    assert sampled == pytest.approx(exact, abs=0.03)


def test_t_test_matches_textbook_value():
    # diffs 1, 2, 3: mean 2, sd 1, t = 2 / (1 / sqrt 3) = 3.4641, df 2 -> p = 0.07418
    assert paired_t_test([1, 2, 3], [0, 0, 0]) == pytest.approx(0.0741799, abs=1e-6)


def test_t_test_against_scipy():
    stats = pytest.importorskip("scipy.stats")
    r = rng(8)
    for n in (2, 5, 30, 500):
        a, b = r.random(n), r.random(n)
        assert paired_t_test(a, b) == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-9)


@pytest.mark.parametrize(
    ("a", "b", "kwargs"),
    [
        ([1.0, 2.0], [1.0], {}),
        ([], [], {}),
        ([1.0, math.nan], [1.0, 2.0], {}),
        ([1.0, 2.0], [1.0, 2.0], {"permutations": 0}),
        ([[1.0]], [[1.0]], {}),  # 2-d input to the one-metric function
    ],
)
def test_bad_arguments_raise_value_error(a, b, kwargs):
    with pytest.raises(ValueError):
        paired_randomization_test(a, b, rng=rng(), **kwargs)


def test_t_test_needs_two_queries():
    with pytest.raises(ValueError):
        paired_t_test([1.0], [0.0])
    assert paired_t_test([1.0, 1.0], [0.0, 0.0]) == 0.0  # constant non-zero difference
