"""The question prior: `is_question` and `damp`, on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from ranking import Hits, damp, is_question


def hits(ids: list[int], scores: list[float]) -> Hits:
    return Hits(np.array(ids, np.int64), np.array(scores, np.float32))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Did you ever get that dog?", True),
        ("I got a beagle in May.", False),
        ("What breed?  ", True),
        ('She asked "is it far?"', True),  # a closing quote after the mark
        ("Where was this? [shares a photo: a lake]", True),  # a trailing note is ignored
        ("Where was this? [a] [b]", True),  # several notes
        ("Where? [shares a photo: a sign [blurred] at a lake]", True),  # nested brackets
        ("Here it is. [shares a photo: is this a lake?]", False),  # the note's "?" is not hers
        ("Really?]", False),  # an unbalanced bracket is text, and the text ends in "]"
        ("本当？", True),  # the full-width mark
        ("", False),
        ("   ", False),
    ],
)
def test_is_question(text: str, expected: bool) -> None:
    assert is_question(text) is expected


def test_damp_multiplies_the_masked_scores_and_reranks() -> None:
    # 1.0 * 0.7 = 0.7 falls below 0.9 and stays above 0.5
    out = damp(hits([1, 2, 3], [1.0, 0.9, 0.5]), [True, False, False], factor=0.7)
    assert out.ids.tolist() == [2, 1, 3]
    assert out.scores.tolist() == pytest.approx([0.9, 0.7, 0.5])


def test_damp_breaks_ties_by_id_and_honours_limit() -> None:
    # 0.8 * 0.5 = 0.4 ties with id 2's 0.4: the smaller id first
    out = damp(hits([3, 2, 1], [0.8, 0.4, 0.1]), [True, False, False], factor=0.5, limit=2)
    assert out.ids.tolist() == [2, 3]
    assert out.scores.tolist() == pytest.approx([0.4, 0.4])


def test_factor_one_changes_nothing_and_zero_sends_questions_last() -> None:
    h = hits([5, 6, 7], [0.9, 0.6, 0.3])
    same = damp(h, [True, True, False], factor=1.0)
    assert same.ids.tolist() == [5, 6, 7]
    assert same.scores.tolist() == pytest.approx([0.9, 0.6, 0.3])
    last = damp(h, [True, True, False], factor=0.0)
    assert last.ids.tolist() == [7, 5, 6]
    assert last.scores.tolist() == pytest.approx([0.3, 0.0, 0.0])


def test_damp_of_nothing_is_nothing() -> None:
    assert len(damp(Hits.empty(), [], factor=0.5)) == 0


@pytest.mark.parametrize(
    ("h", "mask", "factor", "message"),
    [
        (hits([1], [0.5]), [True], 1.5, "factor"),
        (hits([1], [0.5]), [True], -0.1, "factor"),
        (hits([1, 2], [0.5, 0.4]), [True], 0.5, "mask"),
        (hits([1], [-0.5]), [True], 0.5, "non-negative"),
        (hits([1, 1], [0.5, 0.4]), [True, False], 0.5, "duplicate"),
    ],
)
def test_bad_arguments_are_refused(h: Hits, mask: list[bool], factor: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        damp(h, mask, factor=factor)
