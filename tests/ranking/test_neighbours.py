"""spread_to_neighbours: hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from ranking import Hits, spread_to_neighbours


def test_hand_computed_spreading() -> None:
    # hits: 10 (1.0), 20 (0.5), 30 (0.25); turns 9/11 around 10, 19/21/30 around 20
    # (binary fractions, so the sums are exact and the ties real)
    hits = Hits.from_lists([10, 20, 30], [1.0, 0.5, 0.25])
    out = spread_to_neighbours(hits, {10: [9, 11], 20: [19, 21, 30]}, weight=0.5)
    # 10: 1.0 | 9, 11: 0.5 · 1.0 = 0.5 | 20: 0.5 | 30: 0.25 + 0.5 · 0.5 = 0.5 | 19, 21: 0.25
    assert out.ids.tolist() == [10, 9, 11, 20, 30, 19, 21]
    np.testing.assert_allclose(out.scores, [1.0, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25])


def test_max_not_sum_and_a_hit_between_two_hits() -> None:
    # 2 sits between hits 1 and 3: it receives the larger share only
    hits = Hits.from_lists([1, 3, 2], [0.8, 0.6, 0.1])
    out = spread_to_neighbours(hits, {1: [2], 3: [2]}, weight=0.25)
    scores = dict(zip(out.ids.tolist(), out.scores.tolist(), strict=True))
    assert scores[2] == pytest.approx(0.1 + 0.25 * 0.8)
    assert out.ids.tolist() == [1, 3, 2]


def test_self_reference_is_ignored_and_weight_zero_changes_nothing() -> None:
    hits = Hits.from_lists([5, 7], [0.3, 0.4])
    same = spread_to_neighbours(hits, {5: [5, 6]}, weight=0.0)
    assert same.ids.tolist() == [7, 5]  # re-sorted, no neighbour added
    out = spread_to_neighbours(hits, {5: [5]}, weight=1.0)
    assert out.ids.tolist() == [7, 5] and out.scores.tolist() == pytest.approx([0.4, 0.3])


def test_limit_and_ties_by_id() -> None:
    hits = Hits.from_lists([4], [1.0])
    out = spread_to_neighbours(hits, {4: [8, 2, 6]}, weight=0.5, limit=3)
    assert out.ids.tolist() == [4, 2, 6]


@pytest.mark.parametrize(
    ("hits", "weight", "message"),
    [
        (Hits.from_lists([1, 1], [0.5, 0.4]), 0.5, "duplicate"),
        (Hits.from_lists([1], [-0.5]), 0.5, "non-negative"),
        (Hits.from_lists([1], [0.5]), 1.5, "weight"),
        (Hits.from_lists([1], [float("nan")]), 0.5, "NaN"),
    ],
)
def test_bad_arguments(hits: Hits, weight: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        spread_to_neighbours(hits, {}, weight=weight)
