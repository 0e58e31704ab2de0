import numpy as np
import pytest

from ranking import Hits, mmr

# d10 and d11 point the same way; d12 is orthogonal to both.
HITS = Hits.from_lists([10, 11, 12], [1.0, 0.9, 0.5])  # min-max relevance 1.0, 0.8, 0.0
VECTORS = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]], dtype=np.float32)  # d11 not unit


def test_balanced():
    # lambda 0.5, relevance (1.0, 0.8, 0.0), cos(d10, d11) = 1, others 0
    # pick 1: 0.5*rel = (0.5, 0.4, 0.0)                       -> d10, 0.5
    # pick 2: d11 0.5*0.8 - 0.5*1 = -0.1;  d12 0.0 - 0.5*0 = 0 -> d12, 0.0
    # pick 3: d11 0.4 - 0.5*max(1, 0) = -0.1                    -> d11, -0.1
    out = mmr(HITS, VECTORS, lambda_=0.5, limit=3)
    assert out.ids.tolist() == [10, 12, 11]
    np.testing.assert_allclose(out.scores, [0.5, 0.0, -0.1], atol=1e-7)
    assert out.ids.dtype == np.int64
    assert out.scores.dtype == np.float32


def test_default_lambda():
    # lambda 0.7: pick 1 d10 0.7*1 = 0.7
    # pick 2: d11 0.7*0.8 - 0.3*1 = 0.26;  d12 0.7*0 - 0 = 0    -> d11, 0.26
    # pick 3: d12 0.0 - 0.3*0 = 0                                -> d12, 0.0
    out = mmr(HITS, VECTORS, limit=3)
    assert out.ids.tolist() == [10, 11, 12]
    np.testing.assert_allclose(out.scores, [0.7, 0.26, 0.0], atol=1e-6)


def test_lambda_one_keeps_relevance_order():
    out = mmr(HITS, VECTORS, lambda_=1.0, limit=3)
    assert out.ids.tolist() == [10, 11, 12]
    np.testing.assert_allclose(out.scores, [1.0, 0.8, 0.0], atol=1e-6)


def test_lambda_zero_is_novelty_only():
    # pick 1: all 0, the first (highest ranked) wins -> d10, 0
    # pick 2: d11 -1*1 = -1, d12 -1*0 = 0              -> d12, 0
    # pick 3: d11 -1                                   -> d11, -1
    out = mmr(HITS, VECTORS, lambda_=0.0, limit=3)
    assert out.ids.tolist() == [10, 12, 11]
    np.testing.assert_allclose(out.scores, [0.0, 0.0, -1.0], atol=1e-7)


def test_limit():
    assert mmr(HITS, VECTORS, lambda_=0.5, limit=2).ids.tolist() == [10, 12]
    assert len(mmr(HITS, VECTORS, limit=0)) == 0
    assert mmr(HITS, VECTORS, lambda_=0.5, limit=10).ids.tolist() == [10, 12, 11]


def test_ties_go_to_the_higher_ranked_hit_not_the_lower_id():
    # equal scores -> relevance 1.0 each; orthogonal vectors -> no penalty
    hits = Hits.from_lists([5, 3], [2.0, 2.0])
    out = mmr(hits, np.eye(2, dtype=np.float32), limit=2)
    assert out.ids.tolist() == [5, 3]


def test_empty():
    out = mmr(Hits.empty(), np.empty((0, 4), dtype=np.float32), limit=5)
    assert len(out) == 0


@pytest.mark.parametrize(
    "vectors",
    [
        np.ones((2, 2), dtype=np.float32),  # wrong number of rows
        np.ones(3, dtype=np.float32),  # not 2-d
        np.array([[1, 0], [0, 0], [0, 1]], dtype=np.float32),  # zero row
        np.array([[1, 0], [np.nan, 0], [0, 1]], dtype=np.float32),
    ],
)
def test_bad_vectors(vectors):
    with pytest.raises(ValueError, match="vectors"):
        mmr(HITS, vectors, limit=3)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lambda_": 1.5},
        {"lambda_": -0.1},
        {"lambda_": float("nan")},
        {"limit": -1},
        {"limit": None},
    ],
)
def test_bad_arguments(kwargs):
    args = {"limit": 3} | kwargs
    with pytest.raises(ValueError):
        mmr(HITS, VECTORS, **args)


def test_duplicate_ids():
    with pytest.raises(ValueError, match="duplicate"):
        mmr(Hits.from_lists([1, 1], [1.0, 0.5]), np.eye(2, dtype=np.float32), limit=2)
