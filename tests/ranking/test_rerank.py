"""`rerank_head`: re-ordering the head of a ranking by a second score (hand-computed cases)."""

from __future__ import annotations

import numpy as np
import pytest

from ranking import Hits, rerank_head


def hits(ids: list[int], scores: list[float]) -> Hits:
    return Hits(np.array(ids, np.int64), np.array(scores, np.float32))


def test_weight_one_orders_the_head_by_the_second_score_and_keeps_the_values() -> None:
    h = hits([10, 20, 30, 40], [0.9, 0.8, 0.7, 0.1])
    out = rerank_head(h, [0.1, 0.9, 0.5], weight=1.0)  # re-scores 10, 20, 30
    assert out.ids.tolist() == [20, 30, 10, 40]  # 40, unseen, stays last
    assert out.scores.tolist() == pytest.approx([0.9, 0.8, 0.7, 0.1])  # values per rank kept


def test_weight_half_mixes_both_min_max_normalised() -> None:
    # first stage over the head: 1.0, 0.5, 0.0 (min-max of 0.9, 0.8, 0.7)
    # second: 0.0, 0.25, 1.0 (min-max of 0, 1, 4)
    # combined: 0.5, 0.375, 0.5: 10 and 30 tie, the earlier rank (10) first
    h = hits([10, 20, 30], [0.9, 0.8, 0.7])
    out = rerank_head(h, [0.0, 1.0, 4.0], weight=0.5)
    assert out.ids.tolist() == [10, 30, 20]


def test_weight_zero_and_short_heads_change_nothing() -> None:
    h = hits([1, 2, 3], [3.0, 2.0, 1.0])
    assert rerank_head(h, [0.0, 5.0, 9.0], weight=0.0).ids.tolist() == [1, 2, 3]
    assert rerank_head(h, [7.0]).ids.tolist() == [1, 2, 3]
    assert rerank_head(h, []).ids.tolist() == [1, 2, 3]


@pytest.mark.parametrize(
    ("scores", "weight", "message"),
    [
        ([1.0, 2.0, 3.0, 4.0], 1.0, "head scores"),
        ([1.0, float("nan")], 1.0, "finite"),
        ([1.0, 2.0], 1.5, "weight"),
    ],
)
def test_bad_arguments_are_refused(scores: list[float], weight: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rerank_head(hits([1, 2, 3], [3.0, 2.0, 1.0]), scores, weight=weight)
