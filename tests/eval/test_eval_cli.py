"""``convmem eval`` end to end, in-process: a fresh embedded store, the real model, every file.

The end-to-end tests are ``integration`` and ``slow`` (real PostgreSQL, real embedder); the
bad-input tests fail before either is started.
"""

import importlib.util
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import pytest

from convmem.cli import main
from convmem.eval_retrievers import HttpRetriever, QueryVectorMemo, check_http_configs
from convmem_client import Client, RetryPolicy
from eval.configs import BUILTIN_CONFIGS, DEFAULT_CONFIGS
from eval.errors import ConfigError, EvalError
from eval.metrics import evaluate, mean
from eval.trec import read_qrels, read_run

HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
DATA = Path(__file__).resolve().parent.parent / "data"
SMALL_EVAL = DATA / "small_eval.jsonl"
CONFIGS = DEFAULT_CONFIGS  # hybrid-rrf (the baseline), hybrid, lexical, dense
CATEGORIES = ("single-hop", "temporal", "multi-hop", "open-domain")
e2e = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, model_cache):
    out = tmp_path_factory.mktemp("eval") / "small"
    rc = main(
        ["eval", "--dataset", str(SMALL_EVAL), "--out", str(out), "--model-cache", str(model_cache)]
    )
    assert rc == 0
    return out


def load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.integration
@pytest.mark.slow
def test_writes_every_file(small_run):
    names = {p.name for p in small_run.iterdir()}
    expected = {"metrics.json", "per_query.json", "qrels.txt", "report.md", "report.html"}
    assert expected | {f"{c}.run" for c in CONFIGS} <= names


@pytest.mark.integration
@pytest.mark.slow
def test_metrics_equal_those_recomputed_from_the_run_files(small_run):
    m = load(small_run / "metrics.json")
    qrels = read_qrels(small_run / "qrels.txt")
    assert len(qrels) == m["dataset"]["queries"] == 14
    categories = {
        q: v["category"] for q, v in load(small_run / "per_query.json")["queries"].items()
    }
    for config in CONFIGS:
        run = {q: [d for d, _ in r] for q, r in read_run(small_run / f"{config}.run").items()}
        per_query = evaluate(run, qrels, m["metrics"])
        assert mean(per_query) == pytest.approx(m["configs"][config]["overall"])
        for cat in CATEGORIES:
            ids = [q for q, c in categories.items() if c == cat]
            assert mean(per_query, ids) == pytest.approx(m["configs"][config]["by_category"][cat])


@pytest.mark.integration
@pytest.mark.slow
def test_numbers_are_sane(small_run):
    m = load(small_run / "metrics.json")
    assert m["metrics"][:5] == ["recall@1", "recall@5", "recall@10", "recall@20", "recall@50"]
    for config in CONFIGS:
        c = m["configs"][config]
        overall = c["overall"]
        assert 0.0 <= overall["recall@1"] <= overall["recall@10"] <= overall["recall@50"] <= 1.0
        assert c["degraded_queries"] == 0  # a generous budget: nothing was skipped
        assert 0 < c["latency_ms"]["p50"] <= c["latency_ms"]["p95"] <= c["latency_ms"]["p99"]
    # a 20-utterance scope fits in the top 50: dense ranks all of it
    assert m["configs"]["dense"]["overall"]["recall@50"] >= 0.9
    assert m["configs"]["hybrid-rrf"]["overall"]["recall@10"] >= 0.6
    assert set(m["significance"]["configs"]) == set(CONFIGS[1:])


@pytest.mark.integration
@pytest.mark.slow
def test_reports_mention_every_config_and_category(small_run):
    md = (small_run / "report.md").read_text(encoding="utf-8")
    html = (small_run / "report.html").read_text(encoding="utf-8")
    for text in (md, html):
        for word in (*CONFIGS, *CATEGORIES, "p95", "randomisation"):
            assert word in text
    assert html.count("data:image/png;base64,") == (3 if HAS_MATPLOTLIB else 0)


@pytest.mark.integration
@pytest.mark.slow
def test_config_file_external_database_and_compare(
    small_run, tmp_path, model_cache, database_url, capsys
):
    config_file = tmp_path / "configs.yaml"
    config_file.write_text(
        "configs:\n  hybrid-convex:\n    lexical_weight: 0.9\n", encoding="utf-8"
    )
    out = tmp_path / "b"
    args = ["eval", "--dataset", str(SMALL_EVAL), "--out", str(out)]
    args += ["--config", "lexical,hybrid-convex", "--config-file", str(config_file)]
    args += ["--model-cache", str(model_cache), "--database-url", database_url]
    assert main(args) == 0
    m = load(out / "metrics.json")
    assert list(m["configs"]) == ["lexical", "hybrid-convex"]
    assert m["configs"]["hybrid-convex"]["params"]["lexical_weight"] == 0.9
    capsys.readouterr()

    assert main(["eval", "--compare", str(small_run), str(small_run)]) == 0
    assert "no metric moved" in capsys.readouterr().out
    assert main(["eval", "--compare", str(small_run), str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"{out} vs {small_run}" in printed
    assert "metric values moved" in printed or "no metric moved" in printed
    assert "dense" not in printed  # only the configs run in both are compared


def write_jsonl(path: Path, lines: list[Any]) -> Path:
    path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    return path


def bad_qrels_dataset(tmp_path: Path) -> Path:
    lines = [json.loads(x) for x in SMALL_EVAL.read_text(encoding="utf-8").splitlines()[:3]]
    query = {"type": "query", "id": "q", "text": "where?", "qrels": {"no-such-utterance": 1}}
    return write_jsonl(tmp_path / "bad.jsonl", [*lines, query])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--dataset", "{tmp}/absent.jsonl"], "no such file"),
        (["--dataset", str(SMALL_EVAL), "--format", "csv"], "unknown dataset format"),
        (["--dataset", "{tmp}/bad.jsonl"], "unknown utterance ids"),
        (["--dataset", str(SMALL_EVAL), "--config", "bm42"], "unknown config"),
        (["--dataset", str(SMALL_EVAL), "--config-file", "{tmp}/c.json"], "rrf_k"),
        (["--dataset", str(SMALL_EVAL), "--config-file", "{tmp}/absent.yaml"], "cannot read"),
        (["--dataset", str(SMALL_EVAL), "--k", "0"], "--k"),
        (["--dataset", str(SMALL_EVAL), "--url", "http://x", "--config", "hybrid-rrf"], "HTTP"),
        ([], "needs --dataset"),
    ],
)
def test_bad_input_exits_non_zero_with_a_message(tmp_path, capsys, extra, message):
    bad_qrels_dataset(tmp_path)
    (tmp_path / "c.json").write_text('{"configs": {"hybrid-rrf": {"rrf_k": -1}}}')
    args = ["eval", "--out", str(tmp_path / "out")]
    args += [a.replace("{tmp}", str(tmp_path)) for a in extra]
    assert main(args) != 0
    err = capsys.readouterr().err
    assert "convmem: error:" in err
    assert message in err
    assert not (tmp_path / "out").exists()


def test_compare_needs_two_results_directories(tmp_path, capsys):
    assert main(["eval", "--compare", str(tmp_path), str(tmp_path)]) != 0
    assert "per_query.json" in capsys.readouterr().err


class CountingEmbedder:
    dim = 2
    model_id = "counting"

    def __init__(self) -> None:
        self.calls = 0

    def embed_batch(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        return np.ones((len(texts), 2), dtype=np.float32)

    def embed_query(self, text: str) -> npt.NDArray[np.float32]:
        self.calls += 1
        return np.ones(2, dtype=np.float32)


def test_query_vector_memo_embeds_once_and_charges_every_config():
    ticks = iter([0.0, 0.004, 1.0, 1.002])  # two cold embeddings: 4 ms, then 2 ms
    inner = CountingEmbedder()
    memo = QueryVectorMemo(inner, clock=lambda: next(ticks), size=1)
    memo.embed_query("a")
    assert memo.take_charge_ms() == 0.0  # the first config paid for real
    memo.embed_query("a")
    assert memo.take_charge_ms() == pytest.approx(4.0)  # a later one is charged the same
    assert inner.calls == 1
    memo.embed_query("b")  # evicts "a" (size 1)
    memo.embed_query("b")
    assert memo.take_charge_ms() == pytest.approx(2.0)
    assert memo.take_charge_ms() == 0.0
    assert inner.calls == 2


NO_RETRY = RetryPolicy(max_attempts=1)


def _hit(utterance_id: str, score: float) -> dict[str, object]:
    return {
        "utterance_id": utterance_id,
        "conversation_id": "c1",
        "speaker": "Alice",
        "role": "user",
        "text": "hello",
        "started_at": "2023-05-20T10:00:00Z",
        "turn": 0,
        "score": score,
        "user_id": "alice",
        "context": [],
    }


def test_http_retriever_sends_mode_scope_budget_and_reads_hits():
    sent: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        sent.append(body)
        if body["query"] == "slow":
            return httpx.Response(504, json={"title": "Gateway Timeout", "detail": "late"})
        if body["query"] == "bad":
            return httpx.Response(422, json={"title": "Unprocessable", "detail": "no"})
        hits = [_hit("u2", 0.9), _hit("u1", 0.5)]
        return httpx.Response(200, json={"hits": hits, "degraded": ["rerank"], "index_seq": 7})

    client = Client("http://svc", transport=httpx.MockTransport(handler), retry=NO_RETRY)
    retriever = HttpRetriever(client=client, min_seq=7)
    got = retriever.search("where?", k=50, user_id="alice", config=BUILTIN_CONFIGS["dense"])
    assert (got.ids, got.scores, got.degraded) == (("u2", "u1"), (0.9, 0.5), ("rerank",))
    assert sent[0] == {
        "query": "where?",
        "k": 50,
        "mode": "dense",
        "filters": {"user_id": "alice"},
        "budget_ms": 1000.0,
        "min_seq": 7,
    }
    late = retriever.search("slow", k=5, user_id=None, config=BUILTIN_CONFIGS["lexical"])
    assert (late.ids, late.degraded) == ((), ("deadline",))
    assert sent[1]["filters"] == {} and "reference_time" not in sent[1]
    asked = datetime(2023, 5, 20, 10, 2, tzinfo=UTC)
    retriever.search("when?", k=5, user_id=None, config=BUILTIN_CONFIGS["lexical"], asked_at=asked)
    assert sent[2]["reference_time"] == "2023-05-20T10:02:00+00:00"
    with pytest.raises(EvalError, match="422"):
        retriever.search("bad", k=5, user_id=None, config=BUILTIN_CONFIGS["lexical"])
    with pytest.raises(ConfigError, match="hybrid-rrf"):
        check_http_configs([BUILTIN_CONFIGS["hybrid"], BUILTIN_CONFIGS["hybrid-rrf"]])
