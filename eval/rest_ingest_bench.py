"""Sustained REST ingest and its freshness: ``python -m eval.rest_ingest_bench --out DIR``.

Starts the served application (``convmem.wiring.build_app``: embedded PostgreSQL, the served
embedder, the change-feed tailer) under uvicorn on a loopback port, then posts a synthetic
corpus to ``POST /v1/utterances`` in batches (500 by default) from one client, back to back,
as fast as the service acknowledges them. After every acknowledgement a second client asks
``POST /v1/search`` with ``min_seq`` = the acknowledged ``seq`` and a 1 s budget: the time from
the acknowledgement to a search that answers without ``stale_index`` (retried until one
does) is the batch's freshness. Writes ``DIR/rest_ingest.json`` and ``DIR/rest_ingest.md``.
"""

from __future__ import annotations

import argparse
import os
import queue
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

from convmem_client import Client, ConvmemError, RetryPolicy
from eval.bench_report import machine, percentiles, write_report
from eval.serve_process import free_port
from eval.synthetic import SyntheticCorpus


def run(n: int, batch: int, users: int, data_dir: Path, rate: float = 0.0) -> dict[str, Any]:
    """``rate`` > 0 paces the batches to that many utterances/s (open loop); 0: flat out."""
    import uvicorn

    from convmem.settings import Settings
    from convmem.wiring import build_app

    settings = Settings(data_dir=data_dir, demo_data=False)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(build_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    # No retries: a shed batch or search is a finding, and a retry's wait would count as time.
    no_retry = RetryPolicy(max_attempts=1)
    with Client(base, timeout=60, retry=no_retry) as client:
        try:
            client.wait_ready(300)
        except ConvmemError:
            raise SystemExit("the service did not become ready") from None
        utts = SyntheticCorpus(seed=1).utterances(n, users=users)
        batches = [[u.api_body() for u in utts[i : i + batch]] for i in range(0, n, batch)]
        acks: queue.Queue[tuple[int, float] | None] = queue.Queue()
        fresh_ms: list[float] = []
        stale = 0

        def probe() -> None:
            nonlocal stale
            with Client(base, timeout=60, retry=no_retry) as searcher:
                while (item := acks.get()) is not None:
                    seq, acked = item
                    while True:  # a stale answer is retried: the time counts until it is fresh
                        try:
                            result = searcher.search(
                                "the", mode="lexical", k=1, min_seq=seq, budget_ms=1000
                            )
                        except ConvmemError:
                            break  # an error is no stale answer: it ends the wait, as it did
                        if "stale_index" not in result.degraded:
                            break
                        stale += 1
                    fresh_ms.append((time.perf_counter() - acked) * 1000)

        prober = threading.Thread(target=probe, daemon=True)
        prober.start()
        post_ms: list[float] = []
        t0 = time.perf_counter()
        for i, chunk in enumerate(tqdm(batches, desc="ingest", unit="batch", file=sys.stderr)):
            if rate > 0:  # batch i is due at i * batch / rate seconds
                time.sleep(max(0.0, t0 + i * batch / rate - time.perf_counter()))
            start = time.perf_counter()
            try:
                ack = client.ingest(chunk)
            except ConvmemError as exc:
                raise SystemExit(f"ingest failed: {exc}") from exc
            now = time.perf_counter()
            post_ms.append((now - start) * 1000)
            acks.put((ack.seq, now))
        total_s = time.perf_counter() - t0
        acks.put(None)
        prober.join()
    server.should_exit = True
    thread.join(timeout=30)
    return {
        "utterances": n,
        "batch": batch,
        "offered_utt_per_s": rate or None,
        "ingest_utt_per_s": round(n / total_s, 1),
        "post_ms": percentiles(post_ms, digits=2),
        "freshness_ms": percentiles(fresh_ms, digits=2) if fresh_ms else {},
        "stale_probes": stale,
    }


def render(report: dict[str, Any]) -> str:
    r = report["result"]
    f = r["freshness_ms"]
    return (
        "# REST ingest benchmark\n\n"
        f"Machine: {report['machine']['cpus']} CPUs, {report['machine']['platform']};"
        f" {report['date']}; embedder {report['embedder']}\n\n"
        f"- sustained ingest: **{r['ingest_utt_per_s']} utterances/s** through"
        f" `POST /v1/utterances`, batches of {r['batch']} ({r['utterances']} in all;"
        f" offered: {r['offered_utt_per_s'] or 'as fast as acknowledged'})\n"
        f"- per batch: p50 {r['post_ms']['p50']} ms, p99 {r['post_ms']['p99']} ms\n"
        f"- acknowledged to searchable (freshness) at that rate: p50 {f.get('p50')} ms,"
        f" p99 {f.get('p99')} ms, max {f.get('max')} ms; stale answers retried"
        f" {r['stale_probes']}\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.rest_ingest_bench", description=__doc__)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--utterances", type=int, default=20_000)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--users", type=int, default=10)
    p.add_argument("--rate", type=float, default=0.0, help="utterances/s to offer (0: flat out)")
    args = p.parse_args(argv)
    if not 1 <= args.batch <= 1000:
        p.error("--batch must be in 1..1000 (the API's batch limit)")
    with tempfile.TemporaryDirectory(prefix="convmem-rest-ingest-") as tmp:
        os.chmod(tmp, 0o755)  # the embedded PostgreSQL runs as another user when we are root
        result = run(args.utterances, args.batch, args.users, Path(tmp) / "data", args.rate)
    from convmem.settings import Settings

    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "embedder": Settings().embedder.kind,
        "args": {k: str(v) for k, v in vars(args).items()},
        "result": result,
    }
    write_report(args.out, "rest_ingest", report, render)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
