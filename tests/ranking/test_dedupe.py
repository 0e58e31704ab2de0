import math

import numpy as np
import pytest

from ranking import Hits, dedupe


def angle(degrees: float) -> list[float]:
    r = math.radians(degrees)
    return [math.cos(r), math.sin(r)]


def test_drops_the_lower_ranked_of_a_near_duplicate_pair():
    # d1 (1, 0); d2 (0.99, 0.141): cos = 0.99 / |d2| = 0.99 / 1.0000 = 0.990 -> dup of d1
    # d3 (0, 1): cos with d1 = 0; d4 (0.6, 0.8): cos 0.6 with d1, 0.8 with d3 -> kept
    hits = Hits.from_lists([1, 2, 3, 4], [4.0, 3.0, 2.0, 1.0])
    vectors = np.array([[1, 0], [0.99, 0.141], [0, 1], [0.6, 0.8]], dtype=np.float32)
    out = dedupe(hits, vectors)
    assert out.ids.tolist() == [1, 3, 4]
    np.testing.assert_array_equal(out.scores, [4.0, 2.0, 1.0])


def test_compares_only_with_kept_hits():
    # a at 0 deg, b at 20, c at 40: cos(a, b) = cos(b, c) = cos 20 = 0.940, cos(a, c) = 0.766
    # threshold 0.9: b is a's duplicate and goes; c's only duplicate is b, so c stays
    hits = Hits.from_lists([1, 2, 3], [3.0, 2.0, 1.0])
    vectors = np.array([angle(0), angle(20), angle(40)], dtype=np.float32)
    assert dedupe(hits, vectors, threshold=0.9).ids.tolist() == [1, 3]
    # threshold 0.95: nothing is a duplicate
    assert dedupe(hits, vectors, threshold=0.95).ids.tolist() == [1, 2, 3]
    # threshold 0.7: b and c both duplicate a
    assert dedupe(hits, vectors, threshold=0.7).ids.tolist() == [1]


def test_keeps_rank_order_not_id_order():
    hits = Hits.from_lists([9, 4], [2.0, 1.0])
    vectors = np.array([[1, 0], [1, 0]], dtype=np.float32)
    assert dedupe(hits, vectors).ids.tolist() == [9]


def test_vectors_need_not_be_normalised():
    # (3, 0) and (1, 0.01): cos = 1 / sqrt(1.0001) = 0.99995
    hits = Hits.from_lists([1, 2], [2.0, 1.0])
    vectors = np.array([[3, 0], [1, 0.01]], dtype=np.float32)
    assert dedupe(hits, vectors).ids.tolist() == [1]


def test_empty():
    assert len(dedupe(Hits.empty(), np.empty((0, 3), dtype=np.float32))) == 0


def test_bad_arguments():
    hits = Hits.from_lists([1, 2], [2.0, 1.0])
    with pytest.raises(ValueError, match="threshold"):
        dedupe(hits, np.eye(2, dtype=np.float32), threshold=1.5)
    with pytest.raises(ValueError, match="vectors"):
        dedupe(hits, np.eye(3, dtype=np.float32))
    with pytest.raises(ValueError, match="duplicate"):
        dedupe(Hits.from_lists([1, 1], [2.0, 1.0]), np.eye(2, dtype=np.float32))
