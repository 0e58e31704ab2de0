"""Latency and ingest benchmark: ``python -m eval.bench --out DIR``.

Measures, on the real components (embedded PostgreSQL, the served embedder or ``--embedder``,
tantivy, FAISS):
  1. ingest throughput through `Ingestor` (embed + durable upsert), and embedding alone;
  2. ingest-to-searchable delay through the change-feed tailer (poked, as in-process
     writes are, and polling only, as another replica sees them);
  3. search latency of `Searcher.search` — the code path behind ``POST /v1/search`` — per mode,
     at each corpus size, scoped to one user and tenant-wide, with a 50 ms budget.
Writes ``DIR/bench.json`` and ``DIR/bench.md``. An entry point: it wires query_service too.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from eval.bench_report import machine, percentiles, write_report
from eval.synthetic import SyntheticCorpus, SyntheticUtterance
from indexer.bm25_index import TantivyBM25Index
from indexer.embedded_pg import EmbeddedPostgres
from indexer.embedders import load_embedder
from indexer.faiss_index import FaissVectorIndex
from indexer.ingest import Ingestor, embedding_input
from indexer.models import Filters, IndexDoc, Role, UtteranceIn
from indexer.pg_store import PgStore
from indexer.protocols import Embedder
from indexer.reembed import reembed_store
from indexer.shard import DocRecord, IndexShard
from indexer.tailer import ChangeFeedTailer
from query_service.deadline import Deadline
from query_service.errors import DeadlineExceeded
from query_service.searcher import Mode, Searcher, SearchParams

TENANT = "bench"


def _utterance(u: SyntheticUtterance) -> UtteranceIn:
    return UtteranceIn(
        id=u.id,
        conversation_id=u.conversation_id,
        speaker=u.speaker,
        role=Role(u.role),
        text=u.text,
        started_at=u.started_at,
        user_id=u.user_id,
    )


def bench_ingest(
    store: PgStore, embedder: Embedder, corpus: SyntheticCorpus, n: int, batch: int = 500
) -> dict[str, Any]:
    utts = [_utterance(u) for u in corpus.utterances(n, users=5)]
    texts = [embedding_input(u, "text") for u in utts]  # what the default Ingestor embeds
    t0 = time.perf_counter()
    embedder.embed_batch(texts)
    embed_s = time.perf_counter() - t0
    ingestor = Ingestor(store=store, embedder=embedder)
    t0 = time.perf_counter()
    for i in tqdm(range(0, n, batch), desc="ingest", file=sys.stderr):
        ingestor.ingest(TENANT, utts[i : i + batch])
    total_s = time.perf_counter() - t0
    # a change of model: every stored vector re-embedded from its text (indexer.reembed)
    t0 = time.perf_counter()
    reembedded = reembed_store(store, embedder, vectors="bench-other-model/text", view="text")
    reembed_s = time.perf_counter() - t0
    return {
        "utterances": n,
        "batch": batch,
        "reembed_utt_per_s": round(reembedded / reembed_s, 1),
        "ingest_utt_per_s": round(n / total_s, 1),
        "embed_only_utt_per_s": round(n / embed_s, 1),
        "tokens_per_utterance": round(_mean_tokens(texts), 1),
    }


def _mean_tokens(texts: list[str]) -> float:
    """Mean wordpiece count (with [CLS]/[SEP]) under the bundled model's tokenizer."""
    from tokenizers import Tokenizer

    from indexer.model_files import bundled_model_dir, resolve_model_dir

    tokenizer = Tokenizer.from_file(str(resolve_model_dir(bundled_model_dir()).tokenizer))
    tokenizer.no_padding()
    return float(np.mean([len(e.ids) for e in tokenizer.encode_batch(texts)]))


def bench_freshness(
    store: PgStore, embedder: Embedder, samples: int, *, poke: bool
) -> dict[str, Any]:
    shard = IndexShard(lexical=TantivyBM25Index(), vector=FaissVectorIndex(dim=embedder.dim))
    tailer = ChangeFeedTailer(store=store, shard=shard, poll_interval_s=0.05)
    tailer.catch_up()
    tailer.start()
    ingestor = Ingestor(
        store=store, embedder=embedder, on_commit=(lambda _s: tailer.poke()) if poke else None
    )
    delays: list[float] = []
    f = Filters(tenant=TENANT)
    try:
        for i in tqdm(range(samples), desc=f"freshness poke={poke}", file=sys.stderr):
            nonce = f"zqx{i}nonce{int(poke)}"
            u = UtteranceIn(
                id=f"fresh-{poke}-{i}",
                conversation_id="fresh",
                speaker="u",
                role=Role.USER,
                text=f"the word {nonce} appears once",
                started_at=datetime.now(UTC),
                user_id="u",
            )
            ingestor.ingest(TENANT, [u])
            t0 = time.perf_counter()
            while not len(shard.search_lexical(nonce, 1, filters=f, timeout_s=1.0)):
                time.sleep(0.0005)
                if time.perf_counter() - t0 > 5:
                    raise RuntimeError("utterance not searchable within 5 s")
            delays.append((time.perf_counter() - t0) * 1000)
    finally:
        tailer.stop()
    return percentiles(delays)


def bench_search(
    embedder: Embedder,
    corpus: SyntheticCorpus,
    sizes: list[int],
    queries: int,
    users: int,
    embed_limit: int,
) -> list[dict[str, Any]]:
    utts = corpus.utterances(max(sizes), users=users)
    texts = [u.text for u in utts[:embed_limit]]
    real = np.concatenate(
        [
            embedder.embed_batch(texts[i : i + 256])
            for i in tqdm(range(0, len(texts), 256), desc="embed corpus", file=sys.stderr)
        ]
    )
    # Past embed_limit, vectors are real ones plus noise, renormalised: search cost does not
    # depend on the values, and embedding 100k texts on 2 cores would take many minutes.
    rng = np.random.default_rng(1)
    extra = max(0, len(utts) - len(real))
    noise = real[rng.integers(0, len(real), extra)] + 0.05 * rng.standard_normal(
        (extra, real.shape[1])
    ).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    vecs = np.concatenate([real, noise.astype(np.float32)])
    qs = corpus.queries(queries + 20)
    rows: list[dict[str, Any]] = []
    for size in sizes:
        docs, recs = [], []
        for uid, (u, v) in enumerate(zip(utts[:size], vecs[:size], strict=True), 1):
            docs.append(
                IndexDoc(
                    uid=uid,
                    tenant=TENANT,
                    user_id=u.user_id,
                    conversation_id=u.conversation_id,
                    speaker=u.speaker,
                    role=Role(u.role),
                    started_at=u.started_at.timestamp(),
                    text=u.text,
                    embedding=v,
                )
            )
            recs.append(
                DocRecord(
                    uid=uid,
                    tenant=TENANT,
                    id=u.id,
                    conversation_id=u.conversation_id,
                    user_id=u.user_id,
                    turn=uid,
                    speaker=u.speaker,
                    role=Role(u.role),
                    text=u.text,
                    started_at=u.started_at,
                )
            )
        shard = IndexShard(lexical=TantivyBM25Index(), vector=FaissVectorIndex(dim=embedder.dim))
        t0 = time.perf_counter()
        shard.load(docs, recs, seq=size)
        build_s = time.perf_counter() - t0
        searcher = Searcher(shard=shard, embedder=embedder, params=SearchParams())
        for scope, f in (
            ("user", Filters(tenant=TENANT, user_id="user-0")),
            ("tenant", Filters(tenant=TENANT)),
        ):
            # "hybrid+name": the query also names the scope's user, a speaker of half its
            # turns, so speaker routing scores every one of those turns (its worst case)
            for label, mode in _CASES.items():
                prefix = "user-0 " if label == "hybrid+name" else ""
                lat, degraded, failed = [], 0, 0
                stage_ms: dict[str, list[float]] = {}
                for i, q in enumerate(qs):
                    # distinct text, so the query-embedding cache never helps; the suffix is
                    # no speaker's name (speaker routing has its own row below)
                    q = f"{prefix}{q} q{i}{label[0]}{len(label)}{scope[0]}{size}"
                    t0 = time.perf_counter()
                    try:
                        res = searcher.search(
                            q, k=10, mode=mode, filters=f, deadline=Deadline.after_ms(50)
                        )
                    except DeadlineExceeded:
                        res = None  # the API answers 504: no stage fitted
                    took = (time.perf_counter() - t0) * 1000
                    if i < 20:
                        continue  # warm-up
                    lat.append(took)
                    if res is None:
                        failed += 1
                        continue
                    degraded += bool(res.degraded)
                    for stage, ms in res.timings_ms.items():
                        stage_ms.setdefault(stage, []).append(ms)
                rows.append(
                    {
                        "size": size,
                        "scope": scope,
                        "mode": label,
                        "scope_docs": size // users if scope == "user" else size,
                        "latency_ms": percentiles(lat),
                        "degraded_share": round(degraded / len(lat), 4),
                        "timeout_504_share": round(failed / len(lat), 4),
                        "stage_mean_ms": {
                            s: round(float(np.mean(v)), 3) for s, v in stage_ms.items()
                        },
                        "build_s": round(build_s, 2),
                        "max_rss_mb": round(
                            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
                        ),
                    }
                )
    return rows


_CASES: dict[str, Mode] = {
    "lexical": "lexical",
    "dense": "dense",
    "hybrid": "hybrid",
    "hybrid+name": "hybrid",
}


def render(report: dict[str, Any]) -> str:
    ing, fr, m = report["ingest"], report["freshness"], report["machine"]
    poked, polled = fr["poked"], fr["polled"]
    lines = [
        "# Benchmark report",
        "",
        f"Machine: {m['cpus']} CPUs, {m['platform']}; {report['date']}",
        "",
        f"- ingest: **{ing['ingest_utt_per_s']} utterances/s** (batches of {ing['batch']},"
        f" embed + durable write); embedding alone {ing['embed_only_utt_per_s']} utterances/s"
        f" ({ing['tokens_per_utterance']} tokens per utterance on average); re-embedding the"
        f" stored utterances for another model {ing['reembed_utt_per_s']} utterances/s",
        f"- ingest to searchable, in-process (tailer poked): p50 {poked['p50']} ms,"
        f" p99 {poked['p99']} ms",
        f"- ingest to searchable, another replica (poll only, 50 ms): p50 {polled['p50']} ms,"
        f" p99 {polled['p99']} ms",
        "",
        "| utterances | scope (docs) | mode | p50 ms | p95 ms | p99 ms | degraded | 504 |"
        " stage means (ms) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["search"]:
        lat = r["latency_ms"]
        stages = ", ".join(f"{k} {v}" for k, v in r["stage_mean_ms"].items())
        lines.append(
            f"| {r['size']:,} | {r['scope']} ({r['scope_docs']:,}) | {r['mode']} | {lat['p50']} |"
            f" {lat['p95']} | {lat['p99']} | {r['degraded_share']:.1%} |"
            f" {r['timeout_504_share']:.1%} | {stages} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.bench", description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--queries", type=int, default=300)
    p.add_argument("--users", type=int, default=10)
    p.add_argument("--ingest", type=int, default=3000)
    p.add_argument("--freshness", type=int, default=200)
    p.add_argument("--embed-limit", type=int, default=10_000, help="real embeddings, then noise")
    p.add_argument("--ingest-batch", type=int, default=500, dest="ingest_batch")
    p.add_argument(
        "--embedder",
        choices=["static", "onnx", "torch"],
        default="static",
        help="static: potion-base-8M (the served default); onnx: MiniLM",
    )
    p.add_argument("--model-cache", type=Path, default=Path("data/models"))
    args = p.parse_args(argv)
    embedder = load_embedder(args.embedder, model_path=None, cache_dir=args.model_cache)
    corpus = SyntheticCorpus(seed=0)
    with tempfile.TemporaryDirectory(prefix="convmem-bench-") as tmp:
        pg = EmbeddedPostgres(data_dir=Path(tmp) / "pg", cleanup="delete")
        store = PgStore.connect(pg.start())
        try:
            ingest = bench_ingest(store, embedder, corpus, args.ingest, args.ingest_batch)
            freshness = {
                "poked": bench_freshness(store, embedder, args.freshness, poke=True),
                "polled": bench_freshness(store, embedder, max(5, args.freshness // 4), poke=False),
            }
        finally:
            store.close()
            pg.stop()
    search = bench_search(
        embedder, corpus, sorted(args.sizes), args.queries, args.users, args.embed_limit
    )
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "args": {k: str(v) for k, v in vars(args).items()},
        "ingest": ingest,
        "freshness": freshness,
        "search": search,
    }
    write_report(args.out, "bench", report, render)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
