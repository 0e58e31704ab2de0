import numpy as np
import pytest

from ranking import Hits, rrf


def hits(ids: list[int]) -> Hits:
    """A run in the given order; RRF reads positions only, so scores are arbitrary."""
    return Hits.from_lists(ids, [float(len(ids) - i) for i in range(len(ids))])


def test_two_runs_k60():
    # run A: 1, 2, 3      run B: 3, 1, 4
    # d1 = 1/61 + 1/62 = 0.0163934426 + 0.0161290323 = 0.0325224749
    # d3 = 1/63 + 1/61 = 0.0158730159 + 0.0163934426 = 0.0322664585
    # d2 = 1/62        = 0.0161290323
    # d4 = 1/63        = 0.0158730159
    out = rrf([hits([1, 2, 3]), hits([3, 1, 4])])
    assert out.ids.tolist() == [1, 3, 2, 4]
    np.testing.assert_allclose(
        out.scores, [1 / 61 + 1 / 62, 1 / 63 + 1 / 61, 1 / 62, 1 / 63], rtol=1e-6
    )
    assert out.ids.dtype == np.int64
    assert out.scores.dtype == np.float32


def test_k_changes_the_scores():
    # k = 0: d10 = 1/1 = 1.0, d20 = 1/2 = 0.5
    out = rrf([hits([10, 20])], k=0)
    assert out.ids.tolist() == [10, 20]
    np.testing.assert_allclose(out.scores, [1.0, 0.5])


def test_weights():
    # k = 1, weights (2, 1); run A: 1, 2   run B: 2, 1
    # d1 = 2/(1+1) + 1/(1+2) = 1.0 + 0.3333 = 1.3333
    # d2 = 2/(1+2) + 1/(1+1) = 0.6667 + 0.5 = 1.1667
    out = rrf([hits([1, 2]), hits([2, 1])], k=1, weights=[2.0, 1.0])
    assert out.ids.tolist() == [1, 2]
    np.testing.assert_allclose(out.scores, [4 / 3, 7 / 6], rtol=1e-6)


def test_ties_broken_by_id_ascending():
    # d5 = d7 = 1/61 + 1/62, whichever run puts which first
    for a, b in (([5, 7], [7, 5]), ([7, 5], [5, 7])):
        out = rrf([hits(a), hits(b)])
        assert out.ids.tolist() == [5, 7]
        assert out.scores[0] == out.scores[1]


def test_ties_across_three_runs_are_exact():
    # Each doc has ranks {1, 2, 3} across the runs, in a different order:
    # d9: 1, 2, 3   d4: 3, 1, 2   d8: 2, 3, 1  ->  all 1/61 + 1/62 + 1/63 = 0.0484
    # The sums must be bit-identical for the id tie-break to apply.
    out = rrf([hits([9, 8, 4]), hits([4, 9, 8]), hits([8, 4, 9])])
    assert out.ids.tolist() == [4, 8, 9]
    assert out.scores[0] == out.scores[1] == out.scores[2]
    np.testing.assert_allclose(out.scores[0], 1 / 61 + 1 / 62 + 1 / 63, rtol=1e-6)


def test_one_run_keeps_its_order():
    # rank r -> 1/(60 + r)
    out = rrf([hits([30, 10, 20])])
    assert out.ids.tolist() == [30, 10, 20]
    np.testing.assert_allclose(out.scores, [1 / 61, 1 / 62, 1 / 63], rtol=1e-6)


def test_limit():
    run_a, run_b = hits([1, 2, 3]), hits([3, 1, 4])
    assert rrf([run_a, run_b], limit=2).ids.tolist() == [1, 3]
    assert len(rrf([run_a, run_b], limit=0)) == 0
    assert rrf([run_a, run_b], limit=99).ids.tolist() == [1, 3, 2, 4]


def test_empty_inputs():
    assert len(rrf([])) == 0
    assert len(rrf([Hits.empty(), Hits.empty()])) == 0
    with_empty = rrf([Hits.empty(), hits([2, 1])])
    alone = rrf([hits([2, 1])])
    assert with_empty.ids.tolist() == alone.ids.tolist() == [2, 1]
    np.testing.assert_array_equal(with_empty.scores, alone.scores)


def test_zero_weight_run_is_left_out():
    # d9 is only in the zero-weight run: it does not appear at all.
    out = rrf([hits([1, 2]), hits([9, 2])], weights=[1.0, 0.0])
    assert out.ids.tolist() == [1, 2]
    np.testing.assert_allclose(out.scores, [1 / 61, 1 / 62], rtol=1e-6)


def test_duplicate_ids_in_a_run():
    with pytest.raises(ValueError, match="duplicate"):
        rrf([hits([1, 2, 1])])


@pytest.mark.parametrize("weights", [[1.0], [1.0, 1.0, 1.0], [1.0, -1.0], [1.0, float("nan")]])
def test_bad_weights(weights):
    with pytest.raises(ValueError, match="weight"):
        rrf([hits([1]), hits([2])], weights=weights)


@pytest.mark.parametrize("kwargs", [{"k": -1}, {"k": 1.5}, {"limit": -1}])
def test_bad_k_or_limit(kwargs):
    with pytest.raises(ValueError):
        rrf([hits([1])], **kwargs)
