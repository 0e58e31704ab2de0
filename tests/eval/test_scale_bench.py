"""The scale benchmark: its corpus, its recall arithmetic, and one tiny end-to-end run."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from eval.scale_corpus import (
    MAX_TURNS,
    MIN_TURNS,
    CorpusSpec,
    conversation_lengths,
    generate,
    scopes,
    user_sizes,
)
from eval.scale_pgvector import or_query, plan_text
from eval.scale_recall import dense_recall, exact_kth_scores, overlap
from eval.scale_text import queries


def test_user_sizes_are_zipf_over_a_floor_and_sum_to_the_size():
    sizes = user_sizes(CorpusSpec(size=1_000_000, users=10_000))
    assert sizes.sum() == 1_000_000 and sizes.min() >= MIN_TURNS
    assert 9_000 <= sizes.max() <= 11_000  # "a large user of ~10k utterances at 1M"
    assert 50 <= np.median(sizes) <= 90
    assert (user_sizes(CorpusSpec(size=3000, users=30)) == user_sizes(CorpusSpec(3000, 30))).all()
    flat = user_sizes(CorpusSpec(size=3000, users=30, zipf=0.0))
    assert flat.max() - flat.min() <= 1


def test_a_spec_too_small_for_one_conversation_per_user_is_refused():
    with pytest.raises(ValueError, match="size"):
        CorpusSpec(size=100, users=10)


def test_conversations_are_twenty_to_three_hundred_turns():
    rng = random.Random(0)
    for total in (20, 299, 300, 301, 321, 5_000, 10_087):
        lengths = conversation_lengths(total, rng)
        assert sum(lengths) == total
        assert all(MIN_TURNS <= n <= MAX_TURNS for n in lengths)


def test_the_corpus_is_deterministic_and_in_time_order():
    spec = CorpusSpec(size=600, users=6, seed=3)
    a, b = generate(spec), generate(spec)
    assert a.texts == b.texts and (a.started == b.started).all()
    assert (np.diff(a.started) >= 0).all()
    assert a.texts != generate(CorpusSpec(size=600, users=6, seed=4)).texts
    # two speakers per conversation, taking turns, the user first
    assert not a.agent[a.turn == 0].any() and a.agent[a.turn == 1].all()
    large, median, tenant = scopes(a)
    assert (large.name, median.name, tenant.name) == ("large_user", "median_user", "tenant")
    assert large.docs >= median.docs and tenant.docs == 600
    assert (a.user[large.rows] == a.user[large.rows[0]]).all()


def test_queries_are_distinct_and_seeded():
    qs = queries(50, seed=1)
    assert len(set(qs)) == 50 and qs == queries(50, seed=1)
    assert queries(5, seed=1) == qs[:5]  # a prefix: the restart check reuses the first ones


def test_exact_kth_score_and_tie_aware_recall_by_hand():
    # rows: 0 -> 1.0, 1 -> 0.5, 2 -> 0.5 (a tie), 3 -> 0.0 against q = [1, 0]
    vectors = np.array([[1, 0], [0.5, 0.5], [0.5, -0.5], [0, 1]], dtype=np.float32)
    q = np.array([[1, 0]], dtype=np.float32)
    rows = np.arange(4)
    assert exact_kth_scores(vectors, rows, q, 2)[0] == pytest.approx(0.5)
    # uids are rows + 1; either side of the tie at rank 2 is right
    assert dense_recall(vectors, rows, q, [[1, 3]], k=2) == 1.0
    assert dense_recall(vectors, rows, q, [[1, 2]], k=2) == 1.0
    assert dense_recall(vectors, rows, q, [[1, 4]], k=2) == 0.5
    # a uid outside the scope is a miss; a scope smaller than k asks only for what it holds
    assert dense_recall(vectors, np.array([1, 3]), q, [[1, 2]], k=2) == 0.5
    assert dense_recall(vectors, np.array([3]), q, [[4]], k=10) == 1.0


def test_overlap_skips_empty_references():
    assert overlap([[1, 2, 3], [9]], [[3, 4], []], k=10) == 0.5
    assert overlap([[1]], [[]], k=10) is None


def test_or_query_and_plan_text():
    assert or_query("What did I say about the dentist's bill?") == (
        "what | did | i | say | about | the | dentist | s | bill"
    )
    plan = {
        "Node Type": "Limit",
        "Plans": [{"Node Type": "Index Scan", "Index Name": "hnsw"}, {"Node Type": "Sort"}],
    }
    assert plan_text(plan) == "Limit [Index Scan (hnsw), Sort]"


def test_the_pgvector_tier_is_refused_before_it_can_crash_an_avx2_only_cpu():
    from eval.scale_pgvector import PgvectorUnsupported, check_cpu

    with pytest.raises(PgvectorUnsupported, match="needs AVX-512: this CPU has avx2"):
        check_cpu(["avx2"])
    check_cpu(["avx2", "avx512f", "avx512_vnni"])  # runs


def test_gc_watch_counts_only_the_passes_while_on():
    import gc

    from eval.scale_tier import GcWatch

    watch = GcWatch()
    gc.collect()  # off: not counted
    watch.on = True
    gc.collect()
    gc.collect(0)
    watch.on = False
    got = watch.close()
    assert got["passes_by_generation"][2] == 1 and got["passes_by_generation"][0] >= 1
    assert got["longest_ms"] > 0
    assert not any(getattr(cb, "__self__", None) is watch for cb in gc.callbacks)


@pytest.mark.benchmark
def test_scale_bench_writes_its_report_with_exact_recall(tmp_path: Path):
    from eval.scale_bench import main

    out = tmp_path / "out"
    args = ["--out", str(out), "--size", "3000", "--users", "30", "--queries", "10"]
    args += ["--warmup", "2", "--cache-dir", str(tmp_path / "cache")]
    assert main([*args, "--tiers", "inprocess,pgvector,milvus"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["corpus"]["size"] == 3000 and not report["corpus"]["from_cache"]
    assert [s["name"] for s in report["scopes"]] == ["large_user", "median_user", "tenant"]
    assert set(report["tiers"]) == {"inprocess", "pgvector", "milvus"}
    if "avx512f" not in report["machine"]["cpu_flags"]:  # the bundled pgvector cannot run
        assert "AVX-512" in report["tiers"].pop("pgvector")["not_run"]
        assert "Not run on this machine" in (out / "report.md").read_text()
    for name, tier in report["tiers"].items():
        for scope in ("large_user", "median_user", "tenant"):
            lat = tier["search"][scope]["latency_ms"]
            assert set(lat) == {"hybrid", "dense", "lexical"} and lat["hybrid"]["n"] == 10
            assert len(tier["search"][scope]["gc_during_hybrid"]["passes_by_generation"]) == 3
            slowest = [s["ms"] for s in tier["search"][scope]["slowest_hybrid"]]
            assert len(slowest) == 3 and slowest == sorted(slowest, reverse=True)
            assert slowest[0] >= lat["hybrid"]["p99"] - 1e-6
            assert 0 <= tier["recall"][scope]["dense"] <= 1, name
    for name in ("inprocess", "milvus"):  # exact dense search: FAISS flat scan, Milvus FLAT
        assert all(r["dense"] == 1.0 for r in report["tiers"][name]["recall"].values())
    inproc = report["tiers"]["inprocess"]
    assert all(r["lexical"] == 1.0 for r in inproc["recall"].values())  # the reference
    assert inproc["restart"]["utterances"] == 3000
    assert inproc["restart"]["answers_match_build"] == "15/15"
    assert inproc["memory"]["delta_per_utt_bytes"] > 0
    if "pgvector" in report["tiers"]:
        assert report["tiers"]["pgvector"]["size"]["rows"] == 3000
    assert report["tiers"]["milvus"]["build"]["count_after_build"] == 3000
    assert {t["target"] for t in report["targets"]} and "dense_ids" not in json.dumps(report)
    assert "## Recall" in (out / "report.md").read_text()
    # a second run reads the embedded corpus from the cache
    assert main([*args, "--tiers", "inprocess", "--out", str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again" / "report.json").read_text())
    assert again["corpus"]["from_cache"]
