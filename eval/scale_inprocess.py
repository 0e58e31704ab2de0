"""The in-process tier of the scale benchmark, measured in child processes of its own.

``build`` (a child): load the cached corpus, build the shard as the service does
(``convmem.wiring.build_shard``: tantivy BM25 + FAISS), then drop the corpus and read the
steady RSS, write a snapshot (``indexer.snapshot``; its peak over steady is what a
snapshotting replica needs on top), and time the searches. ``restart`` (a fresh child): load
that snapshot into an empty shard, as a restarting replica does, and read the time and the
memory again; a handful of dense searches check that it answers as the built shard did.
Each child writes its figures as JSON; ``run`` spawns both and returns them.

    python -m eval.scale_inprocess build --job JOB.json --result OUT.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from convmem.compute_threads import limit_compute_threads
from convmem.settings import Settings
from convmem.wiring import build_embedder, build_shard, search_params
from eval import scale_corpus
from eval.scale_corpus import TENANT, Corpus
from eval.scale_memory import peak_bytes, reset_peak, rss_bytes, settle
from eval.scale_text import queries as make_queries
from eval.scale_tier import BUDGET_MS, Answer, K, measure
from indexer.ingest import vector_id
from indexer.models import Filters, IndexDoc
from indexer.protocols import Embedder
from indexer.shard import DocRecord, IndexShard
from indexer.snapshot import load_snapshot, save_snapshot
from query_service.deadline import Deadline
from query_service.errors import DeadlineExceeded
from query_service.searcher import Searcher

#: how many queries per scope the restarted shard answers, to check it against the built one
CHECKS = 5
RAW_TIMEOUT_S = 10.0


def records(corpus: Corpus) -> tuple[list[IndexDoc], list[DocRecord]]:
    """The corpus as the shard loads it: uid ``i + 1`` for row ``i``."""
    recs = [corpus.record(i) for i in range(len(corpus))]
    docs = [rec.index_doc(corpus.vectors[i]) for i, rec in enumerate(recs)]
    return docs, recs


class InProcessTier:
    """`ScaleTier` over an `IndexShard` and the served `Searcher`."""

    name = "inprocess"

    def __init__(self, *, shard: IndexShard, settings: Settings, embedder: Embedder) -> None:
        self.shard = shard
        self.searcher = Searcher(shard=shard, embedder=embedder, params=search_params(settings))

    def build(self, corpus: Corpus) -> dict[str, Any]:
        t0 = time.perf_counter()
        docs, recs = records(corpus)
        t1 = time.perf_counter()
        self.shard.load(docs, recs, seq=len(recs))
        t2 = time.perf_counter()
        return {"prepare_s": round(t1 - t0, 2), "load_s": round(t2 - t1, 2)}

    def hybrid(self, query: str, filters: Filters) -> Answer:
        try:
            res = self.searcher.search(
                query, k=K, mode="hybrid", filters=filters, deadline=Deadline.after_ms(BUDGET_MS)
            )
        except DeadlineExceeded:
            return Answer(ids=[], degraded=["504"])
        return Answer([h.record.uid for h in res.hits], res.degraded, res.timings_ms)

    def dense(self, vector: npt.NDArray[np.float32], filters: Filters) -> list[int]:
        hits = self.shard.search_dense(vector, K, filters=filters, timeout_s=RAW_TIMEOUT_S)
        return [int(u) for u in hits.ids]

    def lexical(self, query: str, filters: Filters) -> list[int]:
        hits = self.shard.search_lexical(query, K, filters=filters, timeout_s=RAW_TIMEOUT_S)
        return [int(u) for u in hits.ids]

    def size(self) -> dict[str, Any]:
        return {"utterances": len(self.shard)}

    def close(self) -> None:
        self.searcher.close()


def _dir_bytes(path: Path) -> dict[str, int]:
    """Bytes per top-level entry of a snapshot (a directory counts every file under it)."""
    return {
        f.name: (
            sum(g.stat().st_size for g in f.rglob("*") if g.is_file())
            if f.is_dir()
            else f.stat().st_size
        )
        for f in sorted(path.iterdir())
    }


def _filters(scope: dict[str, Any]) -> Filters:
    return Filters(tenant=TENANT, user_id=scope["user_id"])


def child_build(job: dict[str, Any]) -> dict[str, Any]:
    settings = Settings()
    limit_compute_threads(settings.index.compute_threads)  # as the served process
    embedder = build_embedder(settings)
    baseline = settle()
    corpus = scale_corpus.load(Path(job["corpus"]))
    with_corpus = rss_bytes()
    tier = InProcessTier(
        shard=build_shard(settings, embedder.dim), settings=settings, embedder=embedder
    )
    t0 = time.perf_counter()
    built = tier.build(corpus)
    build_s = time.perf_counter() - t0
    build_peak = peak_bytes()
    n = len(corpus)
    del corpus  # the shard holds what it needs (the texts are shared with its records)
    steady = settle()
    reset_peak()
    snap = Path(job["snapshot"])
    t0 = time.perf_counter()
    save_snapshot(tier.shard, snap, model_id=job["vectors_id"], dim=embedder.dim)
    snapshot_s = time.perf_counter() - t0
    snapshot_peak = peak_bytes()
    steady_after_snapshot = settle()
    qs = make_queries(job["queries"], seed=job["seed"])
    qvecs = np.stack([embedder.embed_query(q) for q in qs])
    scopes = [
        scale_corpus.Scope(s["name"], _filters(s), s["docs"], np.empty(0, dtype=np.int64))
        for s in job["scopes"]
    ]
    searches = measure(tier, scopes, qs, qvecs, warmup=job["warmup"])
    tier.close()
    return {
        "utterances": n,
        "settings_index": settings.index.model_dump(mode="json"),
        "build_s": round(build_s, 2),
        **built,
        "rss": {
            "baseline_bytes": baseline,
            "with_corpus_bytes": with_corpus,
            "build_peak_bytes": build_peak,
            "steady_bytes": steady,
            "snapshot_peak_bytes": snapshot_peak,
            "steady_after_snapshot_bytes": steady_after_snapshot,
        },
        "snapshot": {"write_s": round(snapshot_s, 2), "files": _dir_bytes(snap)},
        "searches": searches,
    }


def child_restart(job: dict[str, Any]) -> dict[str, Any]:
    settings = Settings()
    limit_compute_threads(settings.index.compute_threads)  # as the served process
    embedder = build_embedder(settings)
    shard = build_shard(settings, embedder.dim)
    baseline = settle()
    reset_peak()
    t0 = time.perf_counter()
    info = load_snapshot(shard, Path(job["snapshot"]), model_id=job["vectors_id"], dim=embedder.dim)
    load_s = time.perf_counter() - t0
    ready_at = time.time()
    peak = peak_bytes()
    steady = settle()
    qs = make_queries(CHECKS, seed=job["seed"])
    answers = {
        scope["name"]: [
            [
                int(u)
                for u in shard.search_dense(
                    embedder.embed_query(q), K, filters=_filters(scope), timeout_s=RAW_TIMEOUT_S
                ).ids
            ]
            for q in qs
        ]
        for scope in job["scopes"]
    }
    return {
        "utterances": info.count,
        "load_snapshot_s": round(load_s, 2),
        "ready_at_unix": ready_at,
        "rss": {"baseline_bytes": baseline, "load_peak_bytes": peak, "steady_bytes": steady},
        "dense_ids": answers,
    }


def _spawn(role: str, job: dict[str, Any], work: Path) -> tuple[dict[str, Any], float]:
    """Run a child; return its result and the unix time it was started."""
    job_file, result = work / f"{role}-job.json", work / f"{role}-result.json"
    job_file.write_text(json.dumps(job))
    started = time.time()
    cmd = [sys.executable, "-m", "eval.scale_inprocess", role, "--job", str(job_file)]
    subprocess.run([*cmd, "--result", str(result)], check=True)
    return json.loads(result.read_text()), started


def run(
    *,
    corpus_file: Path,
    scopes: Sequence[scale_corpus.Scope],
    model_id: str,
    queries: int,
    seed: int,
    warmup: int,
    work: Path,
) -> dict[str, Any]:
    """Build, snapshot and search in one child, then restart from the snapshot in another.
    ``queries`` counts the ``warmup`` ones too (``eval.scale_text.queries(queries, seed)``)."""
    job = {
        "corpus": str(corpus_file),
        "snapshot": str(work / "snapshot"),
        "vectors_id": vector_id(model_id, "text"),
        "queries": queries,
        "seed": seed,
        "warmup": warmup,
        "scopes": [{"name": s.name, "user_id": s.filters.user_id, "docs": s.docs} for s in scopes],
    }
    built, _ = _spawn("build", job, work)
    restarted, started = _spawn("restart", job, work)
    restarted["spawn_to_ready_s"] = round(restarted.pop("ready_at_unix") - started, 2)
    same = sum(
        a == b
        for name, answers in restarted["dense_ids"].items()
        for a, b in zip(answers, built["searches"][name]["dense_ids"][:CHECKS], strict=True)
    )
    restarted["answers_match_build"] = f"{same}/{CHECKS * len(scopes)}"
    del restarted["dense_ids"]
    return {"build": built, "restart": restarted, "search": built.pop("searches")}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.scale_inprocess", description=__doc__)
    p.add_argument("role", choices=["build", "restart"])
    p.add_argument("--job", type=Path, required=True)
    p.add_argument("--result", type=Path, required=True)
    args = p.parse_args(argv)
    job = json.loads(args.job.read_text())
    out = child_build(job) if args.role == "build" else child_restart(job)
    args.result.write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
