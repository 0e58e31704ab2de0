import numpy as np
import pytest

from ranking import Hits, convex

# run A: d1 3.0, d2 2.0, d3 1.0  -> min-max 1.0, 0.5, 0.0
# run B: d3 0.9, d4 0.5          -> min-max 1.0, 0.0
RUN_A = Hits.from_lists([1, 2, 3], [3.0, 2.0, 1.0])
RUN_B = Hits.from_lists([3, 4], [0.9, 0.5])


def test_min_max_equal_weights():
    # a doc missing from a run gets that run's min-max minimum, 0
    # d1 = 0.5*1.0 + 0.5*0 (missing from B) = 0.5
    # d2 = 0.5*0.5 + 0.5*0 (missing from B) = 0.25
    # d3 = 0.5*0.0 + 0.5*1.0                = 0.5
    # d4 = 0.5*0 (missing from A) + 0.5*0.0 = 0.0
    # d1 and d3 tie at 0.5: id ascending
    out = convex([RUN_A, RUN_B], weights=[0.5, 0.5])
    assert out.ids.tolist() == [1, 3, 2, 4]
    np.testing.assert_allclose(out.scores, [0.5, 0.5, 0.25, 0.0])
    assert out.ids.dtype == np.int64
    assert out.scores.dtype == np.float32


def test_weights_are_relative():
    # (1, 3) -> (0.25, 0.75)
    # d1 = 0.25*1.0 = 0.25; d2 = 0.25*0.5 = 0.125; d3 = 0.75*1.0 = 0.75; d4 = 0
    out = convex([RUN_A, RUN_B], weights=[1.0, 3.0])
    assert out.ids.tolist() == [3, 1, 2, 4]
    np.testing.assert_allclose(out.scores, [0.75, 0.25, 0.125, 0.0])


def test_z_score():
    # A: mean 2, std sqrt(2/3) = 0.8164966 -> d1 1.2247449, d2 0, d3 -1.2247449 (the min)
    # B: mean 0.7, std 0.2                 -> d3 1, d4 -1 (the min)
    # d1 = 0.5*1.2247449  + 0.5*(-1)  =  0.1123724
    # d2 = 0.5*0          + 0.5*(-1)  = -0.5
    # d3 = 0.5*(-1.2247449) + 0.5*1   = -0.1123724
    # d4 = 0.5*(-1.2247449) + 0.5*(-1) = -1.1123724
    out = convex([RUN_A, RUN_B], weights=[0.5, 0.5], norm="z_score")
    assert out.ids.tolist() == [1, 3, 2, 4]
    np.testing.assert_allclose(out.scores, [0.1123724, -0.1123724, -0.5, -1.1123724], rtol=1e-5)


def test_one_run_is_its_normalised_scores():
    out = convex([RUN_A], weights=[1.0])
    assert out.ids.tolist() == [1, 2, 3]
    np.testing.assert_allclose(out.scores, [1.0, 0.5, 0.0])


def test_single_hit_run_scores_one():
    # min-max of one score is 1.0 (all scores equal)
    out = convex([Hits.from_lists([7], [3.0])], weights=[1.0])
    assert out.ids.tolist() == [7]
    np.testing.assert_array_equal(out.scores, [1.0])


def test_empty_run_is_left_out_with_its_weight():
    # only A remains, and the mean is over A's weight alone: A's min-max scores
    out = convex([RUN_A, Hits.empty()], weights=[0.5, 0.5])
    np.testing.assert_allclose(out.scores, [1.0, 0.5, 0.0])
    assert out.ids.tolist() == [1, 2, 3]


def test_zero_weight_run_is_left_out():
    # d4 is only in B (weight 0): it does not appear
    out = convex([RUN_A, RUN_B], weights=[1.0, 0.0])
    assert out.ids.tolist() == [1, 2, 3]
    np.testing.assert_allclose(out.scores, [1.0, 0.5, 0.0])


def test_no_hits_at_all():
    assert len(convex([], weights=[])) == 0
    assert len(convex([Hits.empty(), Hits.empty()], weights=[0.5, 0.5])) == 0


def test_order_within_a_run_is_not_used():
    shuffled = Hits.from_lists([3, 1, 2], [1.0, 3.0, 2.0])
    out = convex([shuffled], weights=[1.0])
    assert out.ids.tolist() == [1, 2, 3]


def test_limit():
    assert convex([RUN_A, RUN_B], weights=[0.5, 0.5], limit=2).ids.tolist() == [1, 3]


def test_duplicate_ids():
    with pytest.raises(ValueError, match="duplicate"):
        convex([Hits.from_lists([1, 1], [2.0, 1.0])], weights=[1.0])


def test_non_finite_scores():
    with pytest.raises(ValueError, match="NaN"):
        convex([Hits.from_lists([1, 2], [2.0, float("nan")])], weights=[1.0])


@pytest.mark.parametrize("weights", [[1.0], [1.0, 1.0, 1.0], [1.0, -0.5], [0.0, 0.0]])
def test_bad_weights(weights):
    with pytest.raises(ValueError, match="weight"):
        convex([RUN_A, RUN_B], weights=weights)


def test_bad_norm_or_limit():
    with pytest.raises(ValueError, match="norm"):
        convex([RUN_A], weights=[1.0], norm="l2")  # type: ignore[arg-type]  # testing the check
    with pytest.raises(ValueError, match="limit"):
        convex([RUN_A], weights=[1.0], limit=-1)
