"""Figures from a store-fault run (``eval.outage_load.Records``), and their markdown.

Requests are put in the phase in which they were *sent*:

- ``baseline``: before PostgreSQL is stopped;
- ``outage``: from the stop until ``pg_ctl start`` has returned (the server accepts again);
- ``recovered``: from then until the table lock is taken;
- ``lock``: while ``utterances`` is locked;
- ``after_lock``: from the unlock to the end.

Recovery is counted from the moment PostgreSQL accepts connections again to the first write
answered 200 and to the first ``/readyz`` answered 200.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eval.bench_report import percentiles
from eval.outage_load import Call, Events, Records

PHASES = ("baseline", "outage", "recovered", "lock", "after_lock")
RECOVERY_TARGET_S = 5.0


def phase_of(t: float, ev: Events) -> str:
    if t < ev.stop_begin:
        return "baseline"
    if t < ev.back:
        return "outage"
    if t < ev.locked:
        return "recovered"
    if t < ev.unlocked:
        return "lock"
    return "after_lock"


def _statuses(calls: Sequence[Call]) -> dict[str, int]:
    """Counts by status; a 429 by its reason too (``429 capacity``)."""
    out: dict[str, int] = {}
    for c in calls:
        key = f"{c.status} {c.reason}" if c.status == 429 and c.reason else str(c.status)
        out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items()))


def failed(c: Call) -> bool:
    """Failed for lack of the store: a 5xx or no answer. A 429 is admission control
    refusing for CPU (it happens at the same rate with the store up), not a failure of it."""
    return c.status != 200 and c.status != 429


def _latency_ms(calls: Sequence[Call]) -> dict[str, float] | None:
    xs = [(c.answered - c.sent) * 1000 for c in calls if c.answered is not None]
    return percentiles(xs, digits=1) if xs else None


def _searches(calls: Sequence[Call]) -> dict[str, Any]:
    out: dict[str, Any] = {"n": len(calls), "statuses": _statuses(calls)}
    for kind in ("plain", "ryw", "ahead"):
        mine = [c for c in calls if c.kind == kind]
        ok = [c for c in mine if c.status == 200]
        out[kind] = {
            "n": len(mine),
            "failed": sum(failed(c) for c in mine),
            "shed": sum(c.status == 429 for c in mine),
            "stale": sum(c.stale for c in ok),
            "ok_ms": _latency_ms(ok),
        }
    return out


def _writes(calls: Sequence[Call]) -> dict[str, Any]:
    refused = [c for c in calls if c.status != 200]
    return {
        "n": len(calls),
        "statuses": _statuses(calls),
        "refused_with_retry_after": sum(c.retry_after is not None for c in refused),
        "refused_as_problem_json": sum(c.problem_json for c in refused),
        "latency_ms": _latency_ms(calls),
    }


def _first_ok_after(calls: Sequence[Call], t: float) -> float | None:
    times = [c.answered - t for c in calls if c.status == 200 and c.answered and c.answered >= t]
    return round(min(times), 3) if times else None


def summarise(rec: Records, durability: dict[str, Any]) -> dict[str, Any]:
    ev = rec.events
    by_phase: dict[str, dict[str, list[Call]]] = {
        p: {"searches": [], "writes": [], "readyz": []} for p in PHASES
    }
    for name, calls in (("searches", rec.searches), ("writes", rec.writes), ("readyz", rec.readyz)):
        for c in calls:
            by_phase[phase_of(c.sent, ev)][name].append(c)
    phases = {
        p: {
            "searches": _searches(d["searches"]),
            "writes": _writes(d["writes"]),
            "readyz": _statuses(d["readyz"]),
        }
        for p, d in by_phase.items()
    }
    recovery = {
        "first_write_ok_s": _first_ok_after(rec.writes, ev.back),
        "readyz_ok_s": _first_ok_after(rec.readyz, ev.back),
        "first_write_ok_after_unlock_s": _first_ok_after(rec.writes, ev.unlocked),
    }
    down_searches = by_phase["outage"]["searches"] + by_phase["lock"]["searches"]
    down_writes = by_phase["outage"]["writes"]
    worst = [v for v in (recovery["first_write_ok_s"], recovery["readyz_ok_s"]) if v is not None]
    targets = {
        "searches_failed_during_faults": sum(failed(c) for c in down_searches),
        "searches_shed_during_faults": sum(c.status == 429 for c in down_searches),
        "searches_shed_share_baseline": round(
            sum(c.status == 429 for c in by_phase["baseline"]["searches"])
            / max(1, len(by_phase["baseline"]["searches"])),
            4,
        ),
        "outage_writes_without_retry_after": sum(
            c.status != 200 and (c.retry_after is None or not c.problem_json) for c in down_writes
        ),
        "outage_writes_other_than_503_429": sum(
            c.status not in (503, 429) for c in down_writes if c.status != 200
        ),
        "recovery_s": max(worst) if len(worst) == 2 else None,
        "acked_missing": durability["missing"],
    }
    rs = targets["recovery_s"]
    targets["met"] = (
        targets["searches_failed_during_faults"] == 0
        and targets["outage_writes_without_retry_after"] == 0
        and targets["outage_writes_other_than_503_429"] == 0
        and rs is not None
        and rs <= RECOVERY_TARGET_S
        and targets["acked_missing"] == 0
    )
    t0 = ev.start
    return {
        "timeline_s": {k: round(v - t0, 3) for k, v in vars(ev).items() if k != "start"},
        "down_for_s": round(ev.back - ev.down, 3),
        "locked_for_s": round(ev.unlocked - ev.locked, 3),
        "phases": phases,
        "recovery": recovery,
        "durability": durability | {"final_index_seq": rec.final_index_seq},
        "targets": targets,
    }


def _ms(d: dict[str, float] | None, key: str) -> str:
    return "—" if d is None else f"{d[key]:g}"


def render(report: dict[str, Any]) -> str:
    s, t, r = report["summary"], report["summary"]["targets"], report["summary"]["recovery"]
    p = report["plan"]
    lines = [
        "# Store faults: PostgreSQL stopped and started, then locked, under load",
        "",
        f"Machine: {report['machine']}. Command: `{report['command']}`. The load generator runs "
        "on the same cores as the server and PostgreSQL.",
        "",
        f"Load: {p['search_rps']} searches/s (open loop, Poisson; {p['ryw_share']:.0%} with "
        f"`min_seq` = the newest acknowledged write, {p['ahead_share']:.0%} with one past it), "
        f"{p['write_rps']} ingest batches/s of {p['batch']}, `/readyz` every 100 ms, over "
        f"{report['corpus']:,} utterances. PostgreSQL stopped (`pg_ctl stop -m {p['stop_mode']}`) "
        f"for {s['down_for_s']} s, then `utterances` locked (ACCESS EXCLUSIVE, in an open "
        f"transaction) for {s['locked_for_s']} s.",
        "",
        f"- searches failed (5xx or no answer) while the store was down or locked: "
        f"**{t['searches_failed_during_faults']}**; shed by admission control (429, for CPU): "
        f"{t['searches_shed_during_faults']} (baseline share "
        f"{t['searches_shed_share_baseline']:.1%})",
        f"- recovery after PostgreSQL accepts again: first write 200 after "
        f"**{r['first_write_ok_s']} s**, `/readyz` 200 after **{r['readyz_ok_s']} s** "
        f"(target ≤ {RECOVERY_TARGET_S:g} s)",
        f"- writes refused during the outage without `Retry-After` or not problem+json: "
        f"{t['outage_writes_without_retry_after']}; other than 503/429: "
        f"{t['outage_writes_other_than_503_429']}",
        f"- first write 200 after the lock was released: {r['first_write_ok_after_unlock_s']} s",
        f"- acknowledged utterances in the store at the end: {s['durability']['stored']} of "
        f"{s['durability']['acked']} (missing **{t['acked_missing']}**); refused but stored "
        f"anyway: {s['durability']['refused_but_stored']}",
        f"- targets met: **{t['met']}**",
        "",
        "| phase | searches | statuses | plain p50 / p99 ms | ryw stale | ahead stale | "
        "writes statuses | write p50 / max ms | `/readyz` |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in PHASES:
        ph = s["phases"][name]
        se, w = ph["searches"], ph["writes"]
        lines.append(
            f"| {name} | {se['n']} | {se['statuses']} | {_ms(se['plain']['ok_ms'], 'p50')} / "
            f"{_ms(se['plain']['ok_ms'], 'p99')} | {se['ryw']['stale']}/{se['ryw']['n']} | "
            f"{se['ahead']['stale']}/{se['ahead']['n']} | {w['statuses']} | "
            f"{_ms(w['latency_ms'], 'p50')} / {_ms(w['latency_ms'], 'max')} | {ph['readyz']} |"
        )
    return "\n".join(lines) + "\n"
