"""Model-based isolation check: random operations, two tenants, an oracle for every answer.

``python -m eval.isolation_check --out DIR [--ops 10000]`` runs the served app in process,
with two tenants whose utterance, conversation and user ids deliberately collide, and makes
a seeded random mix of ingests, searches, transcript reads and deletes (utterance,
conversation, user) over REST. A plain in-memory model says what each tenant holds. After
every operation the answer is checked against it:

- a search or a transcript never shows another tenant's utterance (**cross-tenant**);
- a deleted utterance never comes back, in a search (made with ``min_seq`` of the delete) or
  a transcript (**resurrected**);
- an utterance the model holds is found by its unique word (**missing**, a recall check).

Writes ``DIR/isolation.json`` and ``DIR/isolation.md``. The test suite runs the same check
with a few hundred operations (``tests/query_service/test_isolation.py``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

# (method, path, json body or None, api key) -> (status, json body)
Call = Callable[[str, str, dict[str, Any] | None, str], tuple[int, Any]]
T0 = datetime(2026, 4, 1, tzinfo=UTC)


@dataclass
class Model:
    """tenant -> utterance id -> (conversation, user, word); what each tenant holds."""

    live: dict[str, dict[str, tuple[str, str, str]]] = field(default_factory=dict)
    deleted: dict[str, set[str]] = field(default_factory=dict)  # tenant -> words gone
    owner: dict[str, str] = field(default_factory=dict)  # word -> tenant that wrote it

    def forget(self, tenant: str, ids: list[str]) -> None:
        for uid in ids:
            _, _, word = self.live[tenant].pop(uid)
            self.deleted[tenant].add(word)


@dataclass
class Tally:
    ops: dict[str, int] = field(default_factory=dict)
    cross_tenant: int = 0
    resurrected: int = 0
    missing: int = 0
    errors: list[str] = field(default_factory=list)

    def count(self, op: str) -> None:
        self.ops[op] = self.ops.get(op, 0) + 1


def run(call: Call, keys: dict[str, str], n_ops: int, seed: int = 0) -> Tally:
    """``keys``: tenant -> API key. Ids collide across tenants on purpose."""
    rng = np.random.default_rng(seed)
    tenants = sorted(keys)
    model = Model({t: {} for t in tenants}, {t: set() for t in tenants})
    tally = Tally()
    seq = 0
    n_words = 0
    attempts = 0
    while sum(tally.ops.values()) + len(tally.errors) < n_ops and attempts < 3 * n_ops:
        attempts += 1
        tenant = tenants[int(rng.integers(len(tenants)))]
        key = keys[tenant]
        held = model.live[tenant]
        r = float(rng.random())
        if r < 0.45 or not held:
            conv = f"c{int(rng.integers(6))}"
            user = f"u{int(conv[1:]) % 3}"  # a conversation always has the same user
            uid = f"{conv}-t{int(rng.integers(30))}"
            if uid in held:
                continue
            word = f"zq{n_words}x"
            n_words += 1
            body: dict[str, Any] = {
                "utterances": [
                    {
                        "id": uid,
                        "conversation_id": conv,
                        "user_id": user,
                        "speaker": "S",
                        "role": "user",
                        "text": f"note {word} about things",
                        "started_at": (T0 + timedelta(seconds=n_words)).isoformat(),
                    }
                ]
            }
            status, out = call("POST", "/v1/utterances", body, key)
            if status == 409 and tenant in str(out):  # a re-used id once deleted: skip it
                continue
            if status != 200:
                tally.errors.append(f"ingest {status}: {out}")
                continue
            seq = max(seq, int(out["seq"]))
            held[uid] = (conv, user, word)
            model.owner[word] = tenant
            tally.count("ingest")
        elif r < 0.75:
            words = [w for _, _, w in held.values()] + sorted(model.deleted[tenant])[-20:]
            other = [w for t in tenants if t != tenant for _, _, w in model.live[t].values()]
            pick = words + other[:20]
            word = pick[int(rng.integers(len(pick)))]
            body = {
                "query": word,
                "k": 10,
                "min_seq": seq,
                "budget_ms": 5000,
                "mode": "lexical",
            }
            status, out = call("POST", "/v1/search", body, key)
            if status != 200:
                tally.errors.append(f"search {status}: {out}")
                continue
            tally.count("search")
            found = {h["text"].split()[1] for h in out["hits"]}
            _check(found, tenant, word, model, tally)
        elif r < 0.85:
            conv = f"c{int(rng.integers(6))}"
            status, out = call("GET", f"/v1/conversations/{conv}", None, key)
            tally.count("transcript")
            if status == 200:
                _check({t["text"].split()[1] for t in out["turns"]}, tenant, None, model, tally)
            elif status != 404:
                tally.errors.append(f"transcript {status}: {out}")
        else:
            kind = ("utterance", "conversation", "user")[int(rng.integers(3))]
            uid = sorted(held)[int(rng.integers(len(held)))]
            conv, user, _ = held[uid]
            target = {"utterance": uid, "conversation": conv, "user": user}[kind]
            status, out = call("DELETE", f"/v1/{kind}s/{target}", None, key)
            if status != 200:
                tally.errors.append(f"delete {kind} {status}: {out}")
                continue
            seq = max(seq, int(out["seq"]))
            gone = [
                u
                for u, (c, us, _) in held.items()
                if (kind == "utterance" and u == uid)
                or (kind == "conversation" and c == conv)
                or (kind == "user" and us == user)
            ]
            model.forget(tenant, gone)
            tally.count(f"delete_{kind}")
    return tally


def _check(found: set[str], tenant: str, asked: str | None, model: Model, tally: Tally) -> None:
    mine = {w for _, _, w in model.live[tenant].values()}
    for word in found:
        if model.owner.get(word) not in (None, tenant):
            tally.cross_tenant += 1
        elif word in model.deleted[tenant] and word not in mine:
            tally.resurrected += 1
    if asked is not None and asked in mine and asked not in found:
        tally.missing += 1


def render(report: dict[str, Any]) -> str:
    t = report["tally"]
    return (
        "# Isolation check\n\n"
        f"Command: `{report['command']}`. {sum(t['ops'].values())} operations "
        f"({', '.join(f'{k} {v}' for k, v in sorted(t['ops'].items()))}).\n\n"
        f"- cross-tenant results: **{t['cross_tenant']}**\n"
        f"- resurrected deletions: **{t['resurrected']}**\n"
        f"- held utterances not found by their word: {t['missing']}\n"
        f"- unexpected statuses: {len(t['errors'])}\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    import tempfile

    from fastapi.testclient import TestClient
    from pydantic import SecretStr

    from convmem.settings import GrpcSettings, PostgresSettings, Settings
    from convmem.wiring import build_app
    from indexer.embedded_pg import EmbeddedPostgres

    ap = argparse.ArgumentParser(prog="python -m eval.isolation_check", description=__doc__)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--ops", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    keys = {"acme": "isolation-key-acme", "beta": "isolation-key-beta"}
    with tempfile.TemporaryDirectory(prefix="convmem-iso-") as tmp:
        pg = EmbeddedPostgres(data_dir=Path(tmp) / "pg", cleanup="delete")
        url = pg.start()
        try:
            settings = Settings(
                data_dir=Path(tmp) / "data",
                demo_data=False,
                grpc=GrpcSettings(port=0),
                postgres=PostgresSettings(url=SecretStr(url)),
                api_keys=SecretStr(",".join(f"{k}:{t}" for t, k in keys.items())),
            )
            with TestClient(build_app(settings)) as client:
                client.get("/readyz")
                while client.get("/readyz").status_code != 200:
                    time.sleep(0.05)

                def call(method: str, path: str, body: Any, key: str) -> tuple[int, Any]:
                    h = {"authorization": f"Bearer {key}"}
                    resp = client.request(method, path, json=body, headers=h)
                    return resp.status_code, resp.json()

                tally = run(call, keys, args.ops, args.seed)
        finally:
            pg.stop()
    report = {
        "command": "python -m eval.isolation_check " + " ".join(argv or sys.argv[1:]),
        "tally": tally.__dict__ | {"errors": tally.errors[:50]},
    }
    from eval.bench_report import write_report

    write_report(args.out, "isolation", report, render)
    ok = tally.cross_tenant == 0 and tally.resurrected == 0
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
