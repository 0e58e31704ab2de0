"""Oracle test: every metric of ``eval`` against ranx on random runs and graded qrels.

ranx's ``ndcg`` is the Järvelin & Kekäläinen form (gain = grade, as trec_eval's ndcg_cut);
its ``ndcg_burges`` (gain 2^g - 1) is a different metric and is not compared.
"""

from collections.abc import Mapping, Sequence

import numpy as np
import pytest
from ranx import Qrels, Run
from ranx import evaluate as ranx_evaluate

from eval import evaluate

# ranx's numba kernels warn while they compile (first call in a fresh environment only).
pytestmark = pytest.mark.filterwarnings("ignore::numba.core.errors.NumbaTypeSafetyWarning")

N_QUERIES = 50
N_DOCS = 40
CUTOFFS = (1, 3, 5, 10, 20)

# our name -> ranx's name
METRICS = {"map": "map"} | {
    f"{ours}@{k}": f"{theirs}@{k}"
    for k in CUTOFFS
    for ours, theirs in [
        ("recall", "recall"),
        ("precision", "precision"),
        ("ndcg", "ndcg"),
        ("mrr", "mrr"),
        ("hit", "hit_rate"),
        ("map", "map"),
    ]
}


def random_collection(
    seed: int,
) -> tuple[dict[str, list[str]], dict[str, dict[str, int]]]:
    """Runs of 1-30 distinct docs; qrels of 1-12 judged docs, grades 0-3, one or more > 0."""
    rng = np.random.default_rng(seed)
    docs = [f"doc{i}" for i in range(N_DOCS)]
    runs: dict[str, list[str]] = {}
    qrels: dict[str, dict[str, int]] = {}
    for q in range(N_QUERIES):
        query_id = f"q{q}"
        run_length = int(rng.integers(1, 31))
        runs[query_id] = [docs[i] for i in rng.permutation(N_DOCS)[:run_length]]
        n_judged = int(rng.integers(1, 13))
        judged = [docs[i] for i in rng.permutation(N_DOCS)[:n_judged]]
        grades = rng.integers(0, 4, size=n_judged)
        grades[0] = max(int(grades[0]), 1)
        qrels[query_id] = {d: int(g) for d, g in zip(judged, grades, strict=True)}
    return runs, qrels


Results = dict[str, dict[str, float]]  # metric name -> query id -> value


def ranx_per_query(
    runs: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]]
) -> Results:
    """ranx's per-query values of every metric, keyed by our metric names."""
    # Strictly decreasing scores, so ranx's sort by score keeps our order.
    run = Run({q: {d: float(len(ds) - i) for i, d in enumerate(ds)} for q, ds in runs.items()})
    ranx_evaluate(Qrels({q: dict(j) for q, j in qrels.items()}), run, list(METRICS.values()))
    return {
        ours: {q: float(v) for q, v in run.scores[theirs].items()}
        for ours, theirs in METRICS.items()
    }


@pytest.fixture(scope="module", params=[0, 1], ids=lambda seed: f"seed{seed}")
def both(request: pytest.FixtureRequest) -> tuple[Results, Results]:
    """(ours, ranx's) per-query values on one random collection; ranx runs once per seed."""
    runs, qrels = random_collection(request.param)
    per_query = evaluate(runs, qrels, list(METRICS))
    ours = {m: {q: values[m] for q, values in per_query.items()} for m in METRICS}
    return ours, ranx_per_query(runs, qrels)


@pytest.mark.parametrize("metric", sorted(METRICS))
def test_agrees_with_ranx(both, metric):
    ours, theirs = both
    assert set(ours[metric]) == set(theirs[metric])
    for query_id, value in theirs[metric].items():
        assert ours[metric][query_id] == pytest.approx(value, abs=1e-6), query_id


def test_collection_exercises_the_edge_cases():
    # Guard against a generator that never hits the cases that tell metrics apart.
    runs, qrels = random_collection(0)
    n_relevant = {q: sum(g > 0 for g in j.values()) for q, j in qrels.items()}
    first_hit = {
        q: next((i for i, d in enumerate(runs[q]) if qrels[q].get(d, 0) > 0), None) for q in runs
    }
    assert any(pos is None for pos in first_hit.values())  # a query with no hit at all
    assert any(pos is not None and pos >= 5 for pos in first_hit.values())  # a late first hit
    assert any(len(r) < 10 for r in runs.values())  # runs shorter than a cutoff
    assert any(n > 3 for n in n_relevant.values())  # more relevant docs than small cutoffs
    assert any(len(set(j.values()) - {0}) > 1 for j in qrels.values())  # mixed grades
