import math
from collections.abc import Callable

import pytest

from eval import (
    average_precision,
    evaluate,
    hit_rate,
    mean,
    ndcg,
    parse_metric,
    precision,
    recall,
    reciprocal_rank,
)

# One query. Relevant: d6 (grade 3), d2 (2), d4 (1), so |R| = 3; d1 is judged non-relevant.
RUN = ["d1", "d2", "d3", "d4", "d5"]
QRELS = {"d2": 2, "d4": 1, "d6": 3, "d1": 0}
# grades down the run: 0, 2, 0, 1, 0  (relevant at positions 2 and 4)


def test_recall():
    assert recall(RUN, QRELS, k=1) == 0.0  # 0 / 3
    assert recall(RUN, QRELS, k=2) == pytest.approx(1 / 3)  # d2 / 3
    assert recall(RUN, QRELS, k=5) == pytest.approx(2 / 3)  # d2, d4 / 3
    assert recall(RUN, QRELS, k=10) == pytest.approx(2 / 3)  # the run has only 5


def test_hit_rate():
    assert hit_rate(RUN, QRELS, k=1) == 0.0  # d1 is not relevant
    assert hit_rate(RUN, QRELS, k=2) == 1.0  # d2 is


def test_precision():
    assert precision(RUN, QRELS, k=1) == 0.0  # 0 / 1
    assert precision(RUN, QRELS, k=2) == 0.5  # 1 / 2
    assert precision(RUN, QRELS, k=5) == pytest.approx(0.4)  # 2 / 5
    assert precision(RUN, QRELS, k=10) == pytest.approx(0.2)  # 2 / 10: divided by k


def test_reciprocal_rank():
    assert reciprocal_rank(RUN, QRELS, k=1) == 0.0  # first relevant at 2 > 1
    assert reciprocal_rank(RUN, QRELS, k=2) == 0.5  # 1 / 2
    assert reciprocal_rank(RUN, QRELS, k=10) == 0.5


def test_ndcg():
    # DCG@5  = 0/log2(2) + 2/log2(3) + 0/log2(4) + 1/log2(5) + 0/log2(6)
    #        = 1.2618595 + 0.4306766 = 1.6925361
    # IDCG@5 = grades 3, 2, 1 from qrels: 3/log2(2) + 2/log2(3) + 1/log2(4)
    #        = 3 + 1.2618595 + 0.5 = 4.7618595
    # nDCG@5 = 1.6925361 / 4.7618595 = 0.3554360
    assert ndcg(RUN, QRELS, k=5) == pytest.approx(0.3554360, abs=1e-7)
    # DCG@2 = 2/log2(3) = 1.2618595; IDCG@2 = 3 + 2/log2(3) = 4.2618595 -> 0.2960819
    assert ndcg(RUN, QRELS, k=2) == pytest.approx(0.2960819, abs=1e-7)
    assert ndcg(RUN, QRELS, k=1) == 0.0  # d1 has no gain


def test_ndcg_ignores_non_positive_grades():
    # grades down the run: -1 -> gain 0, 1 -> 1/log2(3) = 0.6309298; IDCG@2 = 1/log2(2) = 1
    assert ndcg(["a", "b"], {"a": -1, "b": 1}, k=2) == pytest.approx(1 / math.log2(3))


def test_average_precision():
    # relevant retrieved at 2 (P@2 = 1/2) and 4 (P@4 = 2/4); d6 never retrieved
    # AP = (0.5 + 0.5) / 3 = 0.3333333
    assert average_precision(RUN, QRELS) == pytest.approx(1 / 3)
    # @3: only position 2 -> 0.5 / 3 = 0.1666667 (divisor stays |R| = 3)
    assert average_precision(RUN, QRELS, k=3) == pytest.approx(1 / 6)


def test_perfect_run_scores_one():
    perfect = ["d6", "d2", "d4"]
    for metric in (recall, hit_rate, ndcg, reciprocal_rank):
        assert metric(perfect, QRELS, k=3) == pytest.approx(1.0)
    assert precision(perfect, QRELS, k=3) == 1.0
    assert average_precision(perfect, QRELS) == 1.0


def test_empty_run_scores_zero():
    for metric in (recall, hit_rate, precision, ndcg, reciprocal_rank):
        assert metric([], QRELS, k=5) == 0.0
    assert average_precision([], QRELS) == 0.0


ALL_AT_K: list[Callable[..., float]] = [
    recall,
    hit_rate,
    precision,
    ndcg,
    reciprocal_rank,
    average_precision,
]


@pytest.mark.parametrize("metric", ALL_AT_K)
def test_no_relevant_document_is_an_error(metric):
    with pytest.raises(ValueError, match="no relevant"):
        metric(RUN, {"d1": 0}, k=5)
    with pytest.raises(ValueError, match="no relevant"):
        metric(RUN, {}, k=5)


@pytest.mark.parametrize("metric", ALL_AT_K)
@pytest.mark.parametrize(
    ("run", "qrels", "k", "message"),
    [
        (["d1", "d2", "d1"], QRELS, 5, "duplicate"),
        ("d1d2", QRELS, 5, "single string"),
        ([1, 2], QRELS, 5, "strings"),
        (RUN, {"d2": 1.5}, 5, "ints"),
        (RUN, {"d2": True}, 5, "ints"),
        (RUN, QRELS, 0, "k must be"),
        (RUN, QRELS, True, "k must be"),
    ],
)
def test_bad_arguments(metric, run, qrels, k, message):
    with pytest.raises(ValueError, match=message):
        metric(run, qrels, k=k)


@pytest.mark.parametrize(
    ("name", "parsed"),
    [("recall@10", ("recall", 10)), ("hit@1", ("hit", 1)), ("map", ("map", None))]
    + [("map@5", ("map", 5)), ("ndcg@100", ("ndcg", 100)), ("mrr@3", ("mrr", 3))],
)
def test_parse_metric(name, parsed):
    assert parse_metric(name) == parsed


@pytest.mark.parametrize(
    "name",
    ["ndcg", "recall", "recall@0", "recall@01", "recall@-1", "recall@", "foo@3", "MRR@10"]
    + ["hit_rate@5", "precision@10 ", "map@x", ""],
)
def test_parse_metric_rejects(name):
    with pytest.raises(ValueError):
        parse_metric(name)


TWO_RUNS = {"q1": RUN, "q2": ["x", "y"], "q3": ["ignored"]}
TWO_QRELS = {"q1": QRELS, "q2": {"y": 1}}


def test_evaluate():
    # q2: relevant y at position 2 -> recall@1 0, recall@2 1, mrr@10 1/2, map 1/2
    out = evaluate(TWO_RUNS, TWO_QRELS, ["recall@2", "mrr@10", "map"])
    assert list(out) == ["q1", "q2"]  # qrels' queries; q3 has no qrels
    assert out["q1"] == pytest.approx({"recall@2": 1 / 3, "mrr@10": 0.5, "map": 1 / 3})
    assert out["q2"] == pytest.approx({"recall@2": 1.0, "mrr@10": 0.5, "map": 0.5})
    assert list(out["q1"]) == ["recall@2", "mrr@10", "map"]


def test_evaluate_query_missing_from_run_scores_zero():
    out = evaluate({"q1": RUN}, TWO_QRELS, ["recall@10", "ndcg@10"])
    assert out["q2"] == {"recall@10": 0.0, "ndcg@10": 0.0}


def test_evaluate_names_the_bad_query():
    with pytest.raises(ValueError, match="'q2'.*no relevant"):
        evaluate(TWO_RUNS, {"q1": QRELS, "q2": {"y": 0}}, ["recall@10"])


@pytest.mark.parametrize("metrics", [[], "recall@10", ["recall@10", "bogus"]])
def test_evaluate_bad_metrics(metrics):
    with pytest.raises(ValueError):
        evaluate(TWO_RUNS, TWO_QRELS, metrics)


def test_evaluate_no_queries():
    assert evaluate(TWO_RUNS, {}, ["map"]) == {}


def test_mean():
    per_query = {
        "q1": {"recall@2": 1 / 3, "map": 1 / 3},
        "q2": {"recall@2": 1.0, "map": 0.5},
    }
    # recall@2 = (1/3 + 1) / 2 = 0.6666667; map = (1/3 + 1/2) / 2 = 0.4166667
    assert mean(per_query) == pytest.approx({"recall@2": 2 / 3, "map": 5 / 12})
    assert mean(per_query, ["q2"]) == {"recall@2": 1.0, "map": 0.5}
    assert mean(evaluate(TWO_RUNS, TWO_QRELS, ["recall@2", "map"])) == pytest.approx(
        {"recall@2": 2 / 3, "map": 5 / 12}
    )


@pytest.mark.parametrize(
    ("per_query", "query_ids", "message"),
    [
        ({}, None, "no query"),
        ({"q1": {"map": 1.0}}, [], "no query"),
        ({"q1": {"map": 1.0}}, ["q9"], "unknown"),
        ({"q1": {"map": 1.0}}, ["q1", "q1"], "duplicates"),
        ({"q1": {"map": 1.0}}, "q1", "single string"),
        ({"q1": {"map": 1.0}, "q2": {"mrr@10": 1.0}}, None, "metrics"),
    ],
)
def test_mean_bad_arguments(per_query, query_ids, message):
    with pytest.raises(ValueError, match=message):
        mean(per_query, query_ids)
