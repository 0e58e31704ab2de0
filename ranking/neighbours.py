"""Neighbour spreading: a turn next to a relevant turn is likely relevant too.

In a conversation the answer often sits one turn away from the words of the question ("What
do you do for fun?" / "Painting, mostly."), and a fact told over several turns is retrieved
by whichever turn shares the query's words. Each ranked hit therefore passes a share of its
score to the turns around it:

    score'(d) = score(d) + weight · max { score(h) : h a hit, d a neighbour of h }

A neighbour that was not a hit enters the ranking with the share alone (its own score is 0).
Only hits listed in ``neighbours`` spread (the caller looks up the top few); the max, not the
sum, so a turn between two relevant ones is not counted twice. The same idea as passage
"context windows" in QA retrieval and the round-level keys of LongMemEval (Wu et al., 2024),
applied at query time so the index stays one document per turn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ranking._checks import check_finite_scores, check_limit, check_unique_ids, rank_by_score
from ranking.hits import Hits


def spread_to_neighbours(
    hits: Hits,
    neighbours: Mapping[int, Sequence[int]],
    *,
    weight: float,
    limit: int | None = None,
) -> Hits:
    """Re-rank ``hits`` (any score scale, higher is better, scores >= 0) with spreading.

    ``neighbours`` maps a hit's id to the ids of its neighbouring turns. Ties are broken by
    id, ascending. ``weight`` in [0, 1]; 0 returns the hits re-sorted, unchanged in score.
    """
    check_unique_ids(hits, "hits")
    check_finite_scores(hits, "hits")
    check_limit(limit)
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be in [0, 1], got {weight}")
    if len(hits) and float(hits.scores.min()) < 0:
        raise ValueError("spreading needs non-negative scores (normalise them first)")
    own = {int(i): float(s) for i, s in zip(hits.ids, hits.scores, strict=True)}
    received: dict[int, float] = {}
    if weight > 0:
        for src, near in neighbours.items():
            share = weight * own.get(int(src), 0.0)
            if share <= 0:
                continue
            for dst in near:
                d = int(dst)
                if d != int(src) and share > received.get(d, 0.0):
                    received[d] = share
    ids = sorted(own.keys() | received.keys())
    scores = np.array([own.get(i, 0.0) + received.get(i, 0.0) for i in ids], dtype=np.float64)
    return rank_by_score(np.array(ids, dtype=np.int64), scores, limit)
