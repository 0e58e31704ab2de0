"""One node at scale: ``python -m eval.scale_bench --out DIR [--size 1000000] [--users 10000]``.

Issue 13, item 5. Generates (or loads from ``--cache-dir``) a seeded corpus of ``--size``
utterances of ``--users`` users of one tenant, Zipf-sized (``eval.scale_corpus``), embedded
with the served embedder (``convmem.wiring.build_embedder``). Then, per tier of ``--tiers``:

- ``inprocess``: the service's shard (tantivy + FAISS) built in a child process (build time,
  peak and steady RSS), snapshotted, restarted from the snapshot in a fresh child (time and
  RSS), searched through the served `Searcher` (``eval.scale_inprocess``);
- ``pgvector``: one table on the embedded PostgreSQL with HNSW, GIN and a B-tree, searched in
  SQL (``eval.scale_pgvector``);
- ``milvus``: ``indexer.milvus_tier.MilvusTier`` on the embedded Milvus core, fed the corpus as
  change-feed changes, searched through the same `Searcher` (``eval.scale_milvus``).

Each tier answers ``--queries`` queries in three scopes (the largest user, the median user,
the whole tenant): the served hybrid search, and the raw dense and lexical calls; recall is
measured against exact search (``eval.scale_recall``). Writes ``DIR/report.json`` and
``DIR/report.md`` (``eval.scale_report``), figures only. Caches and work files stay in
``--cache-dir``, outside the repository.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from convmem.compute_threads import limit_compute_threads
from convmem.settings import Settings
from convmem.wiring import build_embedder
from eval import scale_corpus
from eval.bench_report import write_report
from eval.scale_corpus import Corpus, CorpusSpec, Scope
from eval.scale_recall import dense_recall, overlap
from eval.scale_report import machine_info, render, targets
from eval.scale_text import queries as make_queries
from eval.scale_tier import K, TierNotRunnable
from indexer.protocols import Embedder

TIERS = ("inprocess", "pgvector", "milvus")
_IDS = ("hybrid_ids", "dense_ids", "lexical_ids")


def corpus_figures(corpus: Corpus, path: Path, cached: bool, seconds: float) -> dict[str, Any]:
    sizes = np.bincount(corpus.user, minlength=corpus.spec.users)
    turns = np.bincount(corpus.conv)
    return {
        "size": len(corpus),
        "users": corpus.spec.users,
        "seed": corpus.spec.seed,
        "zipf_exponent": corpus.spec.zipf,
        "largest_user_utterances": int(sizes.max()),
        "median_user_utterances": int(np.median(sizes)),
        "smallest_user_utterances": int(sizes.min()),
        "conversations": len(turns),
        "turns_per_conversation_min_median_max": (
            f"{turns.min()} / {int(np.median(turns))} / {turns.max()}"
        ),
        "text_bytes_mean": round(float(np.mean([len(t.encode()) for t in corpus.texts])), 1),
        "words_mean": round(float(np.mean([len(t.split()) for t in corpus.texts])), 1),
        "embedder": corpus.model_id,
        "cache_file": str(path),
        "from_cache": cached,
        "generate_and_embed_s": round(seconds, 1),
    }


def _memory(tier: dict[str, Any], n: int) -> dict[str, int]:
    b, r = tier["build"]["rss"], tier["restart"]["rss"]
    return {
        "all_in_per_utt_bytes": round(r["steady_bytes"] / n),
        "delta_per_utt_bytes": round((r["steady_bytes"] - r["baseline_bytes"]) / n),
        "built_delta_per_utt_bytes": round((b["steady_bytes"] - b["baseline_bytes"]) / n),
        "snapshot_extra_per_utt_bytes": round((b["snapshot_peak_bytes"] - b["steady_bytes"]) / n),
    }


def add_recall(
    tiers: dict[str, dict[str, Any]],
    corpus: Corpus,
    scopes: Sequence[Scope],
    vectors: npt.NDArray[np.float32],
) -> None:
    """Each tier's recall per scope, then drop the ids from the report."""
    ref = tiers.get("inprocess", {}).get("search")
    for tier in tiers.values():
        if "search" not in tier:
            continue
        tier["recall"] = {}
        for scope in scopes:
            s = tier["search"][scope.name]
            r: dict[str, Any] = {
                "dense": round(
                    dense_recall(corpus.vectors, scope.rows, vectors, s["dense_ids"], k=K), 4
                )
            }
            if ref is not None:
                lex = overlap(s["lexical_ids"], ref[scope.name]["lexical_ids"], k=K)
                hyb = overlap(s["hybrid_ids"], ref[scope.name]["hybrid_ids"], k=K)
                r["lexical"] = None if lex is None else round(lex, 4)
                r["hybrid_vs_inprocess"] = None if hyb is None else round(hyb, 4)
            tier["recall"][scope.name] = r
    for tier in tiers.values():
        for s in tier.get("search", {}).values():
            for key in _IDS:
                s.pop(key, None)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m eval.scale_bench", description=__doc__.split("\n")[0]
    )
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--size", type=int, default=1_000_000)
    p.add_argument("--users", type=int, default=10_000)
    p.add_argument("--tiers", default=",".join(TIERS), help="comma-separated: " + ", ".join(TIERS))
    p.add_argument("--queries", type=int, default=200, help="per scope, after the warm-up")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--zipf", type=float, default=0.63, help="exponent of the users' sizes")
    p.add_argument(
        "--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "convmem-scale-cache"
    )
    p.add_argument("--pg-shared-buffers", default="4GB")
    p.add_argument("--pg-maintenance-work-mem", default="3GB")
    args = p.parse_args(argv)
    tiers = [t.strip() for t in args.tiers.split(",") if t.strip()]
    unknown = sorted(set(tiers) - set(TIERS))
    if unknown:
        p.error(f"unknown tiers {unknown}: choose from {', '.join(TIERS)}")
    spec = CorpusSpec(size=args.size, users=args.users, seed=args.seed, zipf=args.zipf)
    command = "python -m eval.scale_bench " + shlex.join(sys.argv[1:] if argv is None else argv)
    settings = Settings()
    limit_compute_threads(settings.index.compute_threads)  # as the served process
    embedder = build_embedder(settings)
    stages: dict[str, float] = {}
    t0 = time.perf_counter()
    corpus, path, cached = scale_corpus.load_or_build(spec, embedder, args.cache_dir)
    stages["corpus"] = round(time.perf_counter() - t0, 1)
    scopes = scale_corpus.scopes(corpus)
    qs = make_queries(args.warmup + args.queries, seed=args.seed)
    qvecs = np.stack([embedder.embed_query(q) for q in qs])
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="work-", dir=args.cache_dir) as tmp:
        runners = _runners(args, corpus, path, scopes, qs, qvecs, embedder, Path(tmp))
        for name in tiers:
            t0 = time.perf_counter()
            try:
                results[name] = runners[name]()
            except TierNotRunnable as exc:  # the machine's, not the tier's: said, not failed
                results[name] = {"not_run": str(exc)}
            except Exception as exc:  # noqa: BLE001 - an entry point: report the tier as failed
                results[name] = {"error": f"{type(exc).__name__}: {exc}"}
            stages[name] = round(time.perf_counter() - t0, 1)
    if "build" in results.get("inprocess", {}):
        results["inprocess"]["memory"] = _memory(results["inprocess"], len(corpus))
    t0 = time.perf_counter()
    add_recall(results, corpus, scopes, qvecs)
    stages["recall"] = round(time.perf_counter() - t0, 1)
    report: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "machine": machine_info(),
        "args": {k: str(v) for k, v in vars(args).items()},
        "corpus": corpus_figures(corpus, path, cached, stages["corpus"]),
        "scopes": [{"name": s.name, "user_id": s.filters.user_id, "docs": s.docs} for s in scopes],
        "queries": {"per_scope": args.queries, "warmup": args.warmup, "k": K, "examples": qs[:5]},
        "tiers": results,
        "stages_s": stages,
    }
    report["targets"] = targets(report)
    write_report(args.out, "report", report, render)
    return 1 if any("error" in r for r in results.values()) else 0


def _runners(
    args: argparse.Namespace,
    corpus: Corpus,
    path: Path,
    scopes: list[Scope],
    qs: list[str],
    qvecs: npt.NDArray[np.float32],
    embedder: Embedder,
    work: Path,
) -> dict[str, Callable[[], dict[str, Any]]]:
    """Each tier's run, imported only when it runs."""

    def inprocess() -> dict[str, Any]:
        from eval import scale_inprocess

        return scale_inprocess.run(
            corpus_file=path,
            scopes=scopes,
            model_id=embedder.model_id,
            queries=len(qs),
            seed=args.seed,
            warmup=args.warmup,
            work=work,
        )

    def pgvector() -> dict[str, Any]:
        from eval import scale_pgvector

        return scale_pgvector.run(
            corpus=corpus,
            scopes=scopes,
            queries=qs,
            vectors=qvecs,
            embedder=embedder,
            work=work,
            warmup=args.warmup,
            shared_buffers=args.pg_shared_buffers,
            maintenance_work_mem=args.pg_maintenance_work_mem,
        )

    def milvus() -> dict[str, Any]:
        from eval import scale_milvus

        return scale_milvus.run(
            corpus=corpus,
            scopes=scopes,
            queries=qs,
            vectors=qvecs,
            embedder=embedder,
            work=work,
            warmup=args.warmup,
        )

    return {"inprocess": inprocess, "pgvector": pgvector, "milvus": milvus}


if __name__ == "__main__":
    raise SystemExit(main())
