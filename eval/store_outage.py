"""Store faults under load: ``python -m eval.store_outage --out DIR [--seconds 10 ...]``.

Starts ``convmem serve`` in its own process on the embedded PostgreSQL in a temporary data
dir (demo data on, gRPC off, no API keys: tenant ``default``), loads a synthetic corpus over
REST, then runs ``eval.outage_load.Scenario``: steady searches and writes while PostgreSQL
is stopped (``pg_ctl stop``), kept down, started again with pgserver's own command line
(``eval.pg_control``), and later while the utterances table is locked. At the end it reads
the store directly: every write acknowledged (200) must be there.

Writes ``DIR/store_outage.json`` (the plan and the figures) and ``DIR/store_outage.md``; with
``--requests``, every request too (``DIR/requests.json``: sent, answered, status).
Exits 1 unless the targets hold (issue 12): no search fails while the store is down or
locked, writes are refused with ``Retry-After`` as problem+json, the service takes writes and
is ready again within 5 s of PostgreSQL accepting, and no acknowledged write is missing.
``tests/test_store_outage.py`` runs a short version.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from eval.bench_report import machine, write_report
from eval.loadgen import HttpPool
from eval.outage_load import Plan, Records, Scenario
from eval.outage_report import render, summarise
from eval.pg_control import PgControl
from eval.serve_process import free_port, start_serve, wait_ready
from eval.synthetic import SyntheticCorpus

HOST = "127.0.0.1"
TENANT = "default"  # no API keys


def start_server(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    """``convmem serve`` on the embedded PostgreSQL in ``data_dir/pg``; logs to server.log."""
    env = {
        "CONVMEM_DATA_DIR": str(data_dir),
        "CONVMEM_DEMO_DATA": "true",
        "CONVMEM_PORT": str(port),
        "CONVMEM_GRPC__PORT": "0",
        "CONVMEM_INDEX__SNAPSHOT_INTERVAL_S": "3600",  # no snapshot inside the measured window
    }
    unset = ("DATABASE_URL", "CONVMEM_POSTGRES__URL", "CONVMEM_API_KEYS")
    return start_serve(env, log=data_dir / "server.log", unset=unset)


async def load_corpus(port: int, n: int, users: int) -> None:
    pool = HttpPool(HOST, port, size=1, headers={})
    utts = SyntheticCorpus(seed=0).utterances(n, users=users)
    for i in range(0, len(utts), 500):
        chunk = [u.api_body() for u in utts[i : i + 500]]
        status, data = await pool.post("/v1/utterances", {"utterances": chunk})
        if status != 200:
            raise RuntimeError(f"loading the corpus failed: {status} {data}")
    await pool.aclose()


def durability(control: PgControl, rec: Records) -> dict[str, Any]:
    """Acknowledged utterances found in the store (and refused ones that landed anyway)."""
    import psycopg

    acked = [uid for w in rec.writes if w.status == 200 for uid in w.ids]
    refused = [uid for w in rec.writes if w.status != 200 for uid in w.ids]
    with psycopg.connect(control.url()) as conn:
        rows = conn.execute(
            "SELECT id FROM utterances WHERE tenant = %s AND NOT deleted AND id = ANY(%s)",
            (TENANT, acked + refused),
        ).fetchall()
    stored = {r[0] for r in rows}
    return {
        "acked": len(acked),
        "stored": sum(uid in stored for uid in acked),
        "missing": sum(uid not in stored for uid in acked),
        "refused": len(refused),
        "refused_but_stored": sum(uid in stored for uid in refused),
    }


def measure(plan: Plan, *, data_dir: Path, corpus: int) -> dict[str, Any]:
    """Serve from ``data_dir``, load ``corpus`` utterances, run ``plan``; the report body."""
    port = free_port(HOST)
    control = PgControl(pgdata=data_dir / "pg")
    proc = start_server(data_dir, port)
    try:
        wait_ready(f"http://{HOST}:{port}", proc, log=data_dir / "server.log")
        asyncio.run(load_corpus(port, corpus, plan.users))
        queries = SyntheticCorpus(seed=1).queries(2000)
        scenario = Scenario(host=HOST, port=port, control=control, queries=queries, plan=plan)
        rec = asyncio.run(scenario.run())
        stored = durability(control, rec)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        # pgserver stops the postmaster it started, not the one restarted under it
        if control.running():
            control.stop()
    return {
        "machine": machine(),
        "plan": asdict(plan),
        "corpus": corpus,
        "summary": summarise(rec, stored),
        "requests": rec.to_json(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m eval.store_outage", description=__doc__)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seconds", type=float, default=10.0, help="each steady phase")
    ap.add_argument("--down-s", type=float, default=10.0, help="PostgreSQL kept down")
    ap.add_argument("--lock-s", type=float, default=10.0, help="the table lock held")
    ap.add_argument("--search-rps", type=float, default=40.0)
    ap.add_argument("--write-rps", type=float, default=5.0)
    ap.add_argument("--corpus", type=int, default=20_000)
    ap.add_argument("--stop-mode", choices=["fast", "immediate"], default="fast")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--requests", action="store_true", help="also write every request to DIR/requests.json"
    )
    args = ap.parse_args(argv)
    plan = Plan(
        baseline_s=args.seconds,
        down_s=args.down_s,
        after_s=args.seconds,
        lock_s=args.lock_s,
        tail_s=args.seconds,
        search_rps=args.search_rps,
        write_rps=args.write_rps,
        stop_mode=args.stop_mode,
        seed=args.seed,
    )
    with tempfile.TemporaryDirectory(prefix="convmem-outage-") as tmp:
        body = measure(plan, data_dir=Path(tmp), corpus=args.corpus)
    requests = body.pop("requests")
    report = {"command": "python -m eval.store_outage " + " ".join(argv or sys.argv[1:])} | body
    write_report(args.out, "store_outage", report, render)
    if args.requests:
        (args.out / "requests.json").write_text(json.dumps(requests))
    return 0 if report["summary"]["targets"]["met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
