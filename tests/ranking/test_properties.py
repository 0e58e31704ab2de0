"""Property tests (hypothesis): invariants every fusion and re-rank keeps, on any input."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ranking import Hits, convex, damp, rerank_head, rrf, spread_to_neighbours

_ids = st.lists(st.integers(0, 60), unique=True, max_size=25)
_score = st.floats(-50, 50, allow_nan=False, width=32)


@st.composite
def runs(draw: st.DrawFn) -> Hits:
    ids = draw(_ids)
    scores = sorted(draw(st.lists(_score, min_size=len(ids), max_size=len(ids))), reverse=True)
    return Hits.from_lists(ids, scores)


def _well_formed(out: Hits) -> None:
    assert len(set(out.ids.tolist())) == len(out)  # no duplicates
    assert np.all(np.isfinite(out.scores))
    assert np.all(np.diff(out.scores) <= 1e-6)  # best first


@settings(max_examples=150, deadline=None)
@given(st.lists(runs(), max_size=4), st.integers(0, 100), st.none() | st.integers(0, 30))
def test_rrf_covers_exactly_the_runs_documents_best_first(rs, k, limit) -> None:
    out = rrf(rs, k=k, limit=limit)
    _well_formed(out)
    every = set().union(*(set(r.ids.tolist()) for r in rs)) if rs else set()
    assert set(out.ids.tolist()) <= every
    assert len(out) == (len(every) if limit is None else min(limit, len(every)))


@settings(max_examples=150, deadline=None)
@given(st.lists(runs(), min_size=1, max_size=3), st.data())
def test_convex_scores_stay_in_the_unit_interval(rs, data) -> None:
    weights = data.draw(st.lists(st.floats(0.01, 1.0), min_size=len(rs), max_size=len(rs)))
    out = convex(rs, weights=weights)
    _well_formed(out)
    assert np.all(out.scores >= -1e-6) and np.all(out.scores <= 1 + 1e-6)


@settings(max_examples=150, deadline=None)
@given(runs(), st.data(), st.floats(0.0, 1.0))
def test_damping_never_raises_a_score_and_keeps_the_documents(hits, data, factor) -> None:
    hits = Hits(hits.ids, np.abs(hits.scores), hits.exhaustive)
    hits = Hits(
        hits.ids[np.argsort(-hits.scores, kind="stable")], np.sort(hits.scores)[::-1].copy()
    )
    mask = data.draw(st.lists(st.booleans(), min_size=len(hits), max_size=len(hits)))
    out = damp(hits, mask, factor=factor)
    _well_formed(out)
    before = dict(zip(hits.ids.tolist(), hits.scores.tolist(), strict=True))
    after = dict(zip(out.ids.tolist(), out.scores.tolist(), strict=True))
    assert set(before) == set(after)
    assert all(after[d] <= before[d] + 1e-6 for d in before)


@settings(max_examples=100, deadline=None)
@given(runs(), st.data(), st.floats(0.0, 1.0))
def test_rerank_head_only_reorders_the_head(hits, data, weight) -> None:
    n = data.draw(st.integers(0, len(hits)))
    head_scores = data.draw(st.lists(st.floats(-5, 5), min_size=n, max_size=n))
    out = rerank_head(hits, np.asarray(head_scores, dtype=np.float32), weight=weight)
    assert sorted(out.ids.tolist()) == sorted(hits.ids.tolist())
    assert out.ids[n:].tolist() == hits.ids[n:].tolist()  # the tail keeps its order


@settings(max_examples=100, deadline=None)
@given(runs(), st.floats(0.0, 1.0))
def test_spreading_keeps_every_hit_and_adds_only_neighbours(hits, weight) -> None:
    hits = Hits(hits.ids, np.clip(hits.scores, 0, None), hits.exhaustive)
    near = {int(d): [int(d) + 1000] for d in hits.ids[:3]}
    out = spread_to_neighbours(hits, near, weight=weight)
    _well_formed(out)
    assert set(hits.ids.tolist()) <= set(out.ids.tolist())
    assert set(out.ids.tolist()) - set(hits.ids.tolist()) <= {d + 1000 for d in near}
