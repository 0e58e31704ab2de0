"""Embedder benchmark: ``python -m eval.embed_bench --out DIR``.

Times each embedder this project can serve, on this CPU: potion-base-8M (static) and every
MiniLM ONNX graph (fp32, per-row int8, onnxruntime's dynamic int8), each forced in turn. Per
embedder: single-query latency (p50/p99 over ``--queries`` distinct synthetic questions of
6–14 words) and document throughput (``--docs`` synthetic utterances of 8–20 words, in
batches of 64). Also the cosine of each MiniLM graph's vectors to fp32's (the agreement the
ONNX embedder checks before it picks a quantised graph). Writes ``DIR/embed.json`` and
``DIR/embed.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from eval.bench_report import machine, percentiles, write_report
from eval.synthetic import SyntheticCorpus
from indexer.embedders import load_embedder
from indexer.onnx_graphs import GraphVariant, cpu_info
from indexer.protocols import Embedder

GRAPHS: tuple[GraphVariant, ...] = ("fp32", "int8", "int8-dynamic")


def measure(embedder: Embedder, queries: list[str], docs: list[str]) -> dict[str, Any]:
    embedder.embed_query("warm up")
    lat = []
    for q in queries:
        t0 = time.perf_counter()
        embedder.embed_query(q)
        lat.append((time.perf_counter() - t0) * 1000)
    t0 = time.perf_counter()
    for i in range(0, len(docs), 64):
        embedder.embed_batch(docs[i : i + 64])
    docs_s = time.perf_counter() - t0
    return {"query_ms": percentiles(lat), "docs_per_s": round(len(docs) / docs_s, 1)}


def _min_cosine(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> float:
    return round(float((a * b).sum(axis=1).min()), 4)


def render(report: dict[str, Any]) -> str:
    lines = [
        "# Embedder benchmark",
        "",
        f"Machine: {report['machine']['cpus']} CPUs, {report['machine']['platform']};"
        f" {report['cpu']}, flags {', '.join(report['cpu_flags']) or 'none of interest'};"
        f" {report['date']}",
        "",
        "| embedder | query p50 ms | query p99 ms | documents/s | min cosine to fp32 |",
        "|---|---|---|---|---|",
    ]
    for name, r in report["embedders"].items():
        q = r["query_ms"]
        cos = r.get("min_cosine_to_fp32", "")
        lines.append(f"| {name} | {q['p50']} | {q['p99']} | {r['docs_per_s']} | {cos} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.embed_bench", description=__doc__)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--queries", type=int, default=300)
    p.add_argument("--docs", type=int, default=2000)
    p.add_argument("--model-cache", type=Path, default=Path("data/models"))
    args = p.parse_args(argv)
    corpus = SyntheticCorpus(seed=3)
    queries = [corpus.sentence(6, 14) + "?" for _ in range(args.queries)]
    docs = [corpus.sentence(8, 20) for _ in range(args.docs)]
    sample = docs[:64]
    results: dict[str, Any] = {}
    static = load_embedder("static", model_path=None, cache_dir=args.model_cache)
    results["potion-base-8M (static)"] = measure(static, queries, docs)
    reference: npt.NDArray[np.float32] | None = None
    for graph in GRAPHS:
        sys.stderr.write(f"MiniLM {graph}...\n")
        onnx = load_embedder(
            "onnx", model_path=None, cache_dir=args.model_cache, graph=graph, query_cache=0
        )
        row = measure(onnx, queries, docs)
        vectors = onnx.embed_batch(sample)
        if reference is None:
            reference = vectors
        row["min_cosine_to_fp32"] = _min_cosine(vectors, reference)
        results[f"all-MiniLM-L6-v2 ONNX {graph}"] = row
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "cpu_flags": cpu_info()[0],
        "cpu": cpu_info()[1],
        "args": {k: str(v) for k, v in vars(args).items()},
        "embedders": results,
    }
    write_report(args.out, "embed", report, render)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
