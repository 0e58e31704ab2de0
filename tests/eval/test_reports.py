"""The evaluation pipeline without an engine: a scripted retriever, then every output file."""

import importlib.util
import json
from pathlib import Path

import pytest

from eval.artifacts import write_results
from eval.compare import compare, load_results, moved
from eval.configs import BUILTIN_CONFIGS, EvalConfig
from eval.dataset import Dataset, EvalQuery
from eval.errors import ResultsError
from eval.metrics import evaluate, mean
from eval.runner import RetrievedList, run_all
from eval.summary import Summary, depth, metric_names, score_runs, summarise
from eval.trec import read_qrels, read_run

HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
QUERIES = (
    EvalQuery("q1", "one", {"a": 1, "b": 1}, "easy", "u1"),
    EvalQuery("q2", "two", {"c": 2}, "easy", "u1"),
    EvalQuery("q3", "three", {"d": 1}, "hard", None),
)
RANKINGS = {  # config -> query text -> ranking
    "lexical": {"one": ["a", "x", "b"], "two": ["x", "c"], "three": ["y", "z"]},
    "dense": {"one": ["b", "a"], "two": ["c"], "three": ["d", "d", "y"]},  # a duplicate
}


class Scripted:
    def __init__(self, rankings: dict[str, dict[str, list[str]]]) -> None:
        self.rankings = rankings
        self.calls: list[tuple[str, str, str | None, int]] = []

    def search(
        self,
        query: str,
        *,
        k: int,
        user_id: str | None,
        config: EvalConfig,
        asked_at: object = None,
    ) -> RetrievedList:
        self.calls.append((query, config.name, user_id, k))
        ids = self.rankings[config.name][query]
        degraded = ("rerank",) if query == "two" else ()
        return RetrievedList(
            tuple(ids), tuple(1.0 / (i + 1) for i in range(len(ids))), 2.0, degraded
        )


def evaluate_to(
    out: Path, rankings: dict[str, dict[str, list[str]]] = RANKINGS
) -> tuple[Scripted, Summary]:
    dataset = Dataset(name="tiny", utterances=(), queries=QUERIES)
    configs = [BUILTIN_CONFIGS["lexical"], BUILTIN_CONFIGS["dense"]]
    retriever = Scripted(rankings)
    metrics = metric_names(10)
    runs = run_all(QUERIES, configs, retriever, k=depth(metrics))
    per_query = score_runs(dataset, runs, metrics)
    summary = summarise(dataset, runs, per_query, metrics, k=10)
    write_results(out, summary, runs, per_query, source="tiny")
    return retriever, summary


def test_runner_interleaves_configs_scopes_queries_and_dedupes(tmp_path):
    retriever, summary = evaluate_to(tmp_path)
    assert retriever.calls[:2] == [("one", "lexical", "u1", 50), ("one", "dense", "u1", 50)]
    assert retriever.calls[-1] == ("three", "dense", None, 50)
    dense = json.loads((tmp_path / "per_query.json").read_text())["configs"]["dense"]
    assert dense["metrics"]["q3"]["recall@1"] == 1.0
    assert dense["degraded"] == {"q2": ["rerank"]}


def test_metrics_json_holds_hand_computed_values(tmp_path):
    evaluate_to(tmp_path)
    m = json.loads((tmp_path / "metrics.json").read_text())
    lex = m["configs"]["lexical"]
    # recall@1: q1 1/2, q2 0/1, q3 0/1 -> 1/6; recall@5: q1 2/2, q2 1/1, q3 0 -> 2/3
    assert lex["overall"]["recall@1"] == pytest.approx(1 / 6)
    assert lex["overall"]["recall@5"] == pytest.approx(2 / 3)
    assert lex["by_category"]["easy"]["recall@5"] == 1.0
    assert lex["by_category"]["hard"]["recall@5"] == 0.0
    assert lex["overall"]["mrr@10"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert m["configs"]["dense"]["overall"]["recall@1"] == pytest.approx((0.5 + 1 + 1) / 3)
    assert lex["latency_ms"]["p50"] == 2.0
    assert m["configs"]["dense"]["degraded_queries"] == 1
    assert m["dataset"]["categories"] == {"easy": 2, "hard": 1}
    sig = m["significance"]
    assert sig["baseline"] == "lexical"
    assert set(sig["configs"]["dense"]) == {"overall", "easy", "hard"}
    # 3 queries: exact test over 8 sign vectors
    assert 0 < sig["configs"]["dense"]["overall"]["recall@1"]["p"] <= 1


def test_run_files_reproduce_the_metrics(tmp_path):
    evaluate_to(tmp_path)
    m = json.loads((tmp_path / "metrics.json").read_text())
    qrels = read_qrels(tmp_path / "qrels.txt")
    assert qrels == {q.id: dict(q.qrels) for q in QUERIES}
    for name in ("lexical", "dense"):
        run = {q: [d for d, _ in r] for q, r in read_run(tmp_path / f"{name}.run").items()}
        assert mean(evaluate(run, qrels, m["metrics"])) == pytest.approx(
            m["configs"][name]["overall"]
        )


def test_reports_mention_every_config_and_category(tmp_path):
    evaluate_to(tmp_path)
    md = (tmp_path / "report.md").read_text()
    html = (tmp_path / "report.html").read_text()
    for text in (md, html):
        for word in ("lexical", "dense", "easy", "hard", "p50", "p99", "randomisation"):
            assert word in text
    assert "### Recall@10 (%) by category" in md
    assert html.count("data:image/png;base64,") == (3 if HAS_MATPLOTLIB else 0)


def test_compare_reports_what_moved(tmp_path):
    evaluate_to(tmp_path / "a")
    better = {**RANKINGS, "lexical": {**RANKINGS["lexical"], "three": ["d"]}}
    evaluate_to(tmp_path / "b", better)
    changes = compare(load_results(tmp_path / "a"), load_results(tmp_path / "b"))
    shifted = moved(changes)
    assert shifted
    assert {c.config for c in shifted} == {"lexical"}
    assert {c.group for c in shifted} == {"overall", "hard"}
    hard = next(c for c in shifted if c.group == "hard" and c.metric == "recall@1")
    assert (hard.a, hard.b, hard.delta, hard.n) == (0.0, 1.0, 1.0, 1)
    assert not moved(compare(load_results(tmp_path / "a"), load_results(tmp_path / "a")))


def test_compare_needs_results(tmp_path):
    with pytest.raises(ResultsError, match="cannot read"):
        load_results(tmp_path)


def test_config_with_params_is_recorded(tmp_path):
    dataset = Dataset(name="tiny", utterances=(), queries=QUERIES[:1])
    config = EvalConfig("mine", "lexical", {"candidates": 5}, budget_ms=20)
    runs = run_all(dataset.queries, [config], Scripted({"mine": RANKINGS["lexical"]}), k=50)
    summary = summarise(dataset, runs, score_runs(dataset, runs, ["recall@1"]), ["recall@1"], k=1)
    assert summary.configs[0].config.as_dict() == {
        "mode": "lexical",
        "candidates": 5,
        "budget_ms": 20,
    }
