"""Question prior: a turn that asks a question seldom holds the fact a memory search wants.

In conversation the facts are in statements ("I adopted a beagle in May"); the question that
prompted them ("Did you ever get that dog?") shares the query's words but tells little. After
fusion and neighbour spreading (so a question still passes score to the answer after it), the
score of every hit that is a question is multiplied by ``factor``:

    score'(d) = factor · score(d)   if d is a question
    score'(d) = score(d)            otherwise

A turn is a question when its last sentence ends with "?", ignoring a trailing bracketed note
such as "[shares a photo: ...]" and closing quotes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ranking._checks import check_finite_scores, check_limit, check_unique_ids, rank_by_score
from ranking.hits import Hits

_CLOSERS = " \t\r\n\"'”’»)"
_QUESTION_MARKS = ("?", "？")


def is_question(text: str) -> bool:
    """Whether ``text`` ends with a question mark (trailing ``[...]`` notes and quotes aside)."""
    end = text.rstrip(_CLOSERS)
    while end.endswith("]"):
        opening = _note_start(end)
        if opening is None:
            break  # an unbalanced "]": not a note
        end = end[:opening].rstrip(_CLOSERS)
    return end.endswith(_QUESTION_MARKS)


def _note_start(text: str) -> int | None:
    """Where the bracketed note that ends ``text`` opens (nesting counted), or None."""
    last = text.rfind("[")
    if last >= 0 and text.find("]", last, len(text) - 1) < 0:
        return last  # the usual case, no brackets inside the note: no character loop
    depth = 0
    for i in range(len(text) - 1, -1, -1):
        if text[i] == "]":
            depth += 1
        elif text[i] == "[":
            depth -= 1
            if depth == 0:
                return i
    return None


def damp(hits: Hits, mask: Sequence[bool], *, factor: float, limit: int | None = None) -> Hits:
    """Multiply the scores of the hits where ``mask`` is true by ``factor`` and re-rank.

    ``mask`` is aligned with ``hits``; scores must be >= 0 (a factor below 1 must lower a
    score), ``factor`` in [0, 1] (1 changes nothing). Ties are broken by id, ascending.
    """
    check_unique_ids(hits, "hits")
    check_finite_scores(hits, "hits")
    check_limit(limit)
    if not 0.0 <= factor <= 1.0:
        raise ValueError(f"factor must be in [0, 1], got {factor}")
    if len(mask) != len(hits):
        raise ValueError(f"mask has {len(mask)} entries for {len(hits)} hits")
    if len(hits) and float(hits.scores.min()) < 0:
        raise ValueError("damping needs non-negative scores (normalise them first)")
    scores = hits.scores.astype(np.float64)
    scores[np.asarray(mask, dtype=bool)] *= factor
    return rank_by_score(hits.ids.astype(np.int64, copy=False), scores, limit)
