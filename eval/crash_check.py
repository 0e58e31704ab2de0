"""Crash safety: ``kill -9`` under sustained ingest, then prove nothing acknowledged was lost.

``python -m eval.crash_check --out DIR [--rounds 20]`` runs ``convmem serve`` on the embedded
PostgreSQL in a scratch data dir and, each round:

1. starts it (the first time: an empty store), waits for ``/readyz``;
2. runs REST writers (batches of utterances, now and then a delete) and an audio writer
   (espeak-ng speech over ``/v1/audio/stream``) against it;
3. after a random 1.5–5 s (counted from when the audio stream is ready), sends the server
   ``SIGKILL``: no shutdown hook, no final snapshot, the embedded postmaster orphaned (the
   next start must reclaim it). The index snapshot is
   written every second, so some kills land in the middle of one;
4. restarts it on the same data dir and checks every conversation written so far:
   - **lost**: an acknowledged, undeleted utterance missing from the store (the transcript);
   - **resurrected**: an acknowledged delete whose utterance is back;
   - **diverged**: the index (a search scoped to the conversation) and the store disagree on
     ids or text, in either direction.

At the end the server is stopped cleanly and the postmaster must be gone. Writes
``DIR/crash.json`` and ``DIR/crash.md``; the exit status is 1 if any round failed. The test
suite runs two short rounds (``tests/test_crash.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eval.crash_writers import AudioWriter, Ledger, RestWriter, speech_pcm
from eval.serve_process import free_port, start_serve, wait_ready

KEY, TENANT = "crash-key", "acme"
SPOKEN = (
    "My sister Priya is allergic to peanuts and shellfish.",
    "We adopted a puppy called Biscuit last spring.",
    "Our flight to Lisbon leaves on the third of June.",
)


@dataclass
class Round:
    round: int
    killed_after_s: float
    acked: int
    deleted: int
    calls_cut_off: int
    restart_s: float
    snapshot: str  # "loaded", "rebuilt" or "none"
    reclaimed_postmaster: bool
    lost: int = 0
    resurrected: int = 0
    diverged: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.lost == self.resurrected == self.diverged == 0


class Server:
    """``convmem serve`` as a child process on a fixed data dir."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None
        self.log: Path | None = None

    def start(self, name: str, timeout_s: float = 300) -> float:
        env = {
            "CONVMEM_DATA_DIR": str(self.data_dir),
            "CONVMEM_DEMO_DATA": "false",
            "CONVMEM_PORT": str(self.port),
            "CONVMEM_GRPC__PORT": "0",
            "CONVMEM_API_KEYS": f"{KEY}:{TENANT}",
            "CONVMEM_INDEX__SNAPSHOT_INTERVAL_S": "1",
            "XDG_RUNTIME_DIR": os.environ.get("XDG_RUNTIME_DIR", tempfile.gettempdir()),
        }
        self.log = self.data_dir.parent / f"server-{name}.log"
        t0 = time.monotonic()
        self._proc = start_serve(env, log=self.log, unset=("DATABASE_URL",))
        wait_ready(self.base_url, self._proc, log=self.log, timeout_s=timeout_s)
        return time.monotonic() - t0

    def kill(self) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGKILL)
        self._proc.wait(30)

    def stop(self) -> int:
        assert self._proc is not None
        self._proc.terminate()
        return self._proc.wait(60)

    def log_text(self) -> str:
        return "" if self.log is None else self.log.read_text("utf-8", "replace")


def verify(server: Server, ledger: Ledger, conversations: Sequence[str], out: Round) -> None:
    """Store and index against the ledger, conversation by conversation."""
    import httpx

    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=30) as client:
        for cid in conversations:
            r = client.get(f"/v1/conversations/{cid}")
            stored: dict[str, str] = {}
            if r.status_code == 200:
                stored = {t["utterance_id"]: t["text"] for t in r.json()["turns"]}
            elif r.status_code != 404:
                raise RuntimeError(f"transcript of {cid}: {r.status_code} {r.text[:200]}")
            lost = ledger.live(cid) - set(stored)
            back = ledger.gone(cid) & set(stored)
            indexed = _indexed(client, cid, stored)
            diverged = set(indexed.items()) ^ set(stored.items())
            out.lost += len(lost)
            out.resurrected += len(back)
            out.diverged += len(diverged)
            for what, ids in (("lost", lost), ("resurrected", back), ("diverged", diverged)):
                if ids and len(out.examples) < 10:
                    out.examples.append(f"{what} in {cid}: {sorted(map(str, ids))[:3]}")


def _indexed(client: Any, cid: str, stored: dict[str, str]) -> dict[str, str]:
    """What the index holds for one conversation: a lexical search over its own words, and a
    probe word no utterance has (so an empty conversation still asks the index)."""
    words = {w for text in stored.values() for w in re.findall(r"[a-z0-9]+", text.lower())}
    words.add(f"probe{cid}".lower())
    query = " ".join(sorted(words))[:1900]
    body = {
        "query": query,
        "mode": "lexical",
        "k": 100,
        "budget_ms": 2000,
        "filters": {"conversation_id": cid},
    }
    r = client.post("/v1/search", json=body)
    if r.status_code != 200:
        raise RuntimeError(f"search in {cid}: {r.status_code} {r.text[:200]}")
    return {h["utterance_id"]: h["text"] for h in r.json()["hits"]}


def run(
    work: Path,
    *,
    rounds: int,
    writers: int,
    audio: bool,
    seed: int,
    batch: int = 8,
    kill_window_s: tuple[float, float] = (1.5, 5.0),
) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    server = Server(work / "data")
    ledger = Ledger()
    pcm = speech_pcm(SPOKEN, work) if audio else b""
    results: list[Round] = []
    server.start("initial")
    for n in range(1, rounds + 1):
        stop = threading.Event()
        threads: list[threading.Thread] = [
            RestWriter(
                base_url=server.base_url,
                key=KEY,
                ledger=ledger,
                stop=stop,
                name=f"r{n}w{w}",
                batch=batch,
                rng=np.random.default_rng(rng.integers(2**32)),
            )
            for w in range(writers)
        ]
        if audio:
            threads.append(
                AudioWriter(
                    base_url=server.base_url,
                    key=KEY,
                    ledger=ledger,
                    stop=stop,
                    name=f"r{n}a",
                    pcm=pcm,
                )
            )
        for t in threads:
            t.start()
        for t in threads:
            if isinstance(t, AudioWriter) and not t.ready.wait(120):
                raise RuntimeError("the audio stream never became ready")
        after = float(rng.uniform(*kill_window_s))
        time.sleep(after)
        failed_before = ledger.failed
        server.kill()
        stop.set()
        for t in threads:
            t.join(30)
        acked, deleted = ledger.count()
        restart_s = server.start(f"round{n}")
        log = server.log_text()
        snapshot = (
            "loaded"
            if "loaded snapshot" in log
            else "rebuilt"
            if "no usable snapshot" in log
            else "none"
        )
        result = Round(
            round=n,
            killed_after_s=round(after, 2),
            acked=acked,
            deleted=deleted,
            calls_cut_off=ledger.failed - failed_before,
            restart_s=round(restart_s, 2),
            snapshot=snapshot,
            reclaimed_postmaster="reclaimed" in log,
        )
        verify(server, ledger, sorted(ledger.touched), result)
        results.append(result)
        sys.stderr.write(
            f"round {n}/{rounds}: killed after {after:.1f} s, {acked} acknowledged so far,"
            f" snapshot {snapshot}, lost {result.lost}, resurrected {result.resurrected},"
            f" diverged {result.diverged}\n"
        )
    code = server.stop()
    postmaster_left = _postmaster_alive(work / "data" / "pg")
    return {
        "rounds": [asdict(r) | {"ok": r.ok} for r in results],
        "passed": sum(r.ok for r in results),
        "acknowledged": ledger.count()[0],
        "deletes_acknowledged": ledger.count()[1],
        "conversations": len(ledger.touched),
        "acknowledged_by_source": dict(ledger.by_source),
        "clean_exit_code": code,
        "postmaster_left_running": postmaster_left,
        "params": {
            "rounds": rounds,
            "writers": writers,
            "audio": audio,
            "seed": seed,
            "kill_window_s": list(kill_window_s),
        },
    }


def _postmaster_alive(pgdata: Path, wait_s: float = 30) -> bool:
    pid_file = pgdata / "postmaster.pid"
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            pid = int(pid_file.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        time.sleep(0.2)
    return True


def render(report: dict[str, Any]) -> str:
    rounds = report["rounds"]
    left = "still running" if report["postmaster_left_running"] else "gone"
    header = (
        "round", "killed after s", "acknowledged", "cut off", "restart s", "snapshot",
        "orphan reclaimed", "lost", "resurrected", "diverged",
    )  # fmt: skip
    lines = [
        "# Crash check",
        "",
        f"`kill -9` under ingest, {len(rounds)} rounds: **{report['passed']} of {len(rounds)}**"
        f" with 0 acknowledged utterances lost, 0 deletes undone and the index converged to"
        f" the store. {report['acknowledged']} utterances and {report['deletes_acknowledged']}"
        f" deletes acknowledged in {report['conversations']} conversations"
        f" ({', '.join(f'{n} over {s}' for s, n in report['acknowledged_by_source'].items())});"
        " after the final"
        f" clean stop the postmaster was {left}.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for r in rounds:
        cells = (
            r["round"], r["killed_after_s"], r["acked"], r["calls_cut_off"], r["restart_s"],
            r["snapshot"], "yes" if r["reclaimed_postmaster"] else "no", r["lost"],
            r["resurrected"], r["diverged"],
        )  # fmt: skip
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    examples = [e for r in rounds for e in r["examples"]]
    if examples:
        lines += ["", "Examples:", *[f"- {e}" for e in examples[:20]]]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m eval.crash_check", description=__doc__)
    ap.add_argument("--out", type=Path, required=True, help="report directory")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--writers", type=int, default=2, help="REST writer threads")
    ap.add_argument("--no-audio", action="store_true", help="REST writers only")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.rounds < 1 or args.writers < 1:
        ap.error("--rounds and --writers must be at least 1")
    args.out.mkdir(parents=True, exist_ok=True)
    # not under a 0700 dir: as root, the embedded PostgreSQL runs as another user
    with tempfile.TemporaryDirectory(prefix="convmem-crash-") as tmp:
        os.chmod(tmp, 0o755)
        report = run(
            Path(tmp),
            rounds=args.rounds,
            writers=args.writers,
            audio=not args.no_audio,
            seed=args.seed,
        )
    (args.out / "crash.json").write_text(json.dumps(report, indent=2))
    (args.out / "crash.md").write_text(render(report))
    sys.stderr.write(render(report))
    ok = report["passed"] == args.rounds and not report["postmaster_left_running"]
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
