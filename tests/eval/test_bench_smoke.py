"""Benchmark smoke tests (``pytest -m benchmark``): each entry point runs on a tiny corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.benchmark


def test_rest_ingest_bench_writes_its_report(tmp_path: Path) -> None:
    from eval.rest_ingest_bench import main

    assert main(["--out", str(tmp_path), "--utterances", "60", "--batch", "20"]) == 0
    report = json.loads((tmp_path / "rest_ingest.json").read_text())
    result = report["result"]
    assert result["utterances"] == 60 and result["post_ms"]["n"] == 3
    assert result["freshness_ms"]["n"] == 3 and result["ingest_utt_per_s"] > 0
    assert "sustained ingest" in (tmp_path / "rest_ingest.md").read_text()


def test_search_bench_writes_its_report(tmp_path: Path) -> None:
    from eval.bench import main

    args = ["--out", str(tmp_path), "--sizes", "500", "--queries", "5", "--ingest", "40"]
    assert main([*args, "--freshness", "4", "--ingest-batch", "20"]) == 0
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["ingest"]["batch"] == 20 and report["search"]
    assert all(row["timeout_504_share"] == 0 for row in report["search"])


def test_embed_bench_writes_its_report(tmp_path: Path) -> None:
    from eval.embed_bench import main

    args = ["--out", str(tmp_path), "--queries", "5", "--docs", "20"]
    assert main([*args, "--model-cache", str(tmp_path / "models")]) == 0
    report = json.loads((tmp_path / "embed.json").read_text())
    assert len(report["embedders"]) == 4
    assert report["embedders"]["all-MiniLM-L6-v2 ONNX fp32"]["min_cosine_to_fp32"] >= 0.999


def test_load_bench_writes_its_report_and_plot(tmp_path: Path) -> None:
    from eval.load_bench import main

    args = ["--out", str(tmp_path), "--sizes", "400", "--users", "4", "--duration", "1"]
    assert main([*args, "--multiples", "0.5", "2"]) == 0
    report = json.loads((tmp_path / "load.json").read_text())
    (size,) = report["sizes"]
    assert size["capacity_rps"] > 0
    assert {(r["transport"], r["multiple"]) for r in size["sweep"]} == {
        ("rest", 0.5),
        ("rest", 2),
        ("grpc", 0.5),
        ("grpc", 2),
    }
    assert all(r["sent"] > 0 for r in size["sweep"])
    # no failures but refusals: 429 (shed) and 504 (no time left to start) are answers
    assert all(set(r["statuses"]) <= {"200", "429", "504"} for r in size["sweep"])
    assert size["stream"]["n"] > 0 and len(size["mixed"]) == 2
    assert (tmp_path / "load.png").stat().st_size > 0
    assert "Capacity C" in (tmp_path / "load.md").read_text()
