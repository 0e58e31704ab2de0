"""Our TREC qrels and run files read by ranx (a trec_eval-compatible reader) give our metrics."""

import pytest

from eval.metrics import evaluate, mean
from eval.trec import write_qrels, write_run

ranx = pytest.importorskip("ranx")


def test_trec_files_read_by_ranx_give_our_metrics(tmp_path):
    qrels = {"q1": {"a": 1, "c": 2, "z": 0}, "q2": {"y": 1}}
    run = {
        "q1": [("a", 3.0), ("b", 2.0), ("c", 1.0)],
        "q2": [("x", 0.5), ("y", 0.5), ("w", 0.1)],  # a tie: written as n..1 to keep the order
    }
    write_qrels(tmp_path / "qrels.txt", qrels)
    write_run(tmp_path / "r.run", run, tag="t")
    r_qrels = ranx.Qrels.from_file(str(tmp_path / "qrels.txt"), kind="trec")
    r_run = ranx.Run.from_file(str(tmp_path / "r.run"), kind="trec")
    names = ["recall@2", "ndcg@3", "mrr@3", "precision@2"]
    ours = mean(evaluate({q: [d for d, _ in r] for q, r in run.items()}, qrels, names))
    theirs = ranx.evaluate(r_qrels, r_run, names)
    for name in names:
        assert theirs[name] == pytest.approx(ours[name]), name
