"""The scale benchmark's report: the machine, the targets (pass/fail) and a table per figure.

``targets`` reads the figures against issue 13's targets for one node at 1M utterances;
``render`` writes the markdown (``report.md``) from the JSON report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from indexer.onnx_graphs import cpu_info

KB = 1000
MB = 1000**2
#: (figure, limit, unit): issue 13, item 5
TARGET_P99_INPROCESS_MS = 15.0
TARGET_RAM_PER_UTT_BYTES = 2_500
TARGET_RESTART_S = 10.0
TARGET_P99_MILVUS_MS = 30.0


def machine_info(meminfo: Path = Path("/proc/meminfo")) -> dict[str, Any]:
    """CPU model, its vector flags (avx2, avx512_vnni, ...), cores and memory."""
    import os
    import platform

    flags, model = cpu_info()
    mem = 0
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    return {
        "cpu": model,
        "cpu_flags": flags,
        "cores": len(os.sched_getaffinity(0)),
        "memory_bytes": mem,
        "platform": platform.platform(),
    }


def _p99(tier: dict[str, Any], scope: str, call: str = "hybrid") -> float | None:
    try:
        return float(tier["search"][scope]["latency_ms"][call]["p99"])
    except (KeyError, TypeError):
        return None


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with what was measured (None: not measured) and whether it is met."""
    tiers = report["tiers"]
    inproc = tiers.get("inprocess", {})
    mem = inproc.get("memory", {})
    restart = inproc.get("restart", {})
    rows = [
        (
            "in-process hybrid p99, large user (ms)",
            _p99(inproc, "large_user"),
            TARGET_P99_INPROCESS_MS,
        ),
        (
            "in-process RAM per utterance, all-in (bytes)",
            mem.get("all_in_per_utt_bytes"),
            TARGET_RAM_PER_UTT_BYTES,
        ),
        (
            "in-process restart from snapshot, spawn to ready (s)",
            restart.get("spawn_to_ready_s"),
            TARGET_RESTART_S,
        ),
        (
            "Milvus hybrid p99, large user (ms)",
            _p99(tiers.get("milvus", {}), "large_user"),
            TARGET_P99_MILVUS_MS,
        ),
    ]
    return [
        {
            "target": name,
            "measured": value,
            "limit": limit,
            "pass": None if value is None else value <= limit,
        }
        for name, value, limit in rows
    ]


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return [*out, ""]


def _latency(report: dict[str, Any]) -> list[str]:
    rows = []
    for name, tier in report["tiers"].items():
        for scope, s in tier.get("search", {}).items():
            lat = s["latency_ms"]
            row: list[Any] = [name, f"{scope} ({s['scope_docs']:,})"]
            for call in ("hybrid", "dense", "lexical"):
                row += [lat.get(call, {}).get("p50"), lat.get(call, {}).get("p99")]
            stages = ", ".join(f"{k} {v}" for k, v in s.get("stage_mean_ms", {}).items())
            failed = f"{s.get('failed_share', 0):.1%}"
            gc_ = s.get("gc_during_hybrid")
            gcs = "—"
            if gc_:
                gcs = "/".join(map(str, gc_["passes_by_generation"])) + f", {gc_['longest_ms']} ms"
            rows.append([*row, f"{s['degraded_share']:.1%}", failed, gcs, stages or "—"])
    header = ["tier", "scope (docs)", "hybrid p50", "hybrid p99", "dense p50", "dense p99"]
    header += ["lexical p50", "lexical p99", "degraded", "failed"]
    header += ["gc passes gen0/1/2, longest", "searcher stage means (ms)"]
    return _table(header, rows)


def _slowest(report: dict[str, Any]) -> list[str]:
    rows = []
    for name, tier in report["tiers"].items():
        for scope, s in tier.get("search", {}).items():
            for slow in s.get("slowest_hybrid", []):
                stages = ", ".join(f"{k} {v}" for k, v in slow["stages_ms"].items())
                rows.append([name, scope, slow["query"], slow["ms"], stages or "—"])
    if not rows:
        return []
    header = ["tier", "scope", "query #", "hybrid ms", "its stages (ms)"]
    return ["## The slowest hybrid searches", "", *_table(header, rows)]


def _recall(report: dict[str, Any]) -> list[str]:
    rows = []
    for name, tier in report["tiers"].items():
        for scope, r in tier.get("recall", {}).items():
            rows.append(
                [name, scope, r.get("dense"), r.get("lexical"), r.get("hybrid_vs_inprocess")]
            )
    header = ["tier", "scope", "dense recall@10 vs exact", "lexical overlap@10 vs tantivy BM25"]
    return _table([*header, "hybrid overlap@10 vs in-process"], rows)


def _inprocess(tier: dict[str, Any], n: int) -> list[str]:
    b, r, mem = tier["build"], tier["restart"], tier["memory"]
    rss, rrss = b["rss"], r["rss"]
    snap = sum(b["snapshot"]["files"].values())
    rows = [
        [
            "build (records + IndexDoc, then `IndexShard.load`)",
            f"{b['build_s']} s ({b['prepare_s']} + {b['load_s']})",
        ],
        [
            "RSS: interpreter + libraries + embedder (baseline)",
            f"{rss['baseline_bytes'] / MB:,.0f} MB",
        ],
        ["RSS: steady after build, corpus dropped", f"{rss['steady_bytes'] / MB:,.0f} MB"],
        ["RSS: build peak (corpus still in memory)", f"{rss['build_peak_bytes'] / MB:,.0f} MB"],
        [
            "RSS: peak while writing the snapshot",
            f"{rss['snapshot_peak_bytes'] / MB:,.0f} MB"
            f" (+{mem['snapshot_extra_per_utt_bytes']:,} B/utt over steady)",
        ],
        [
            "snapshot write",
            f"{b['snapshot']['write_s']} s, {snap / MB:,.0f} MB on disk ({snap / n:,.0f} B/utt)",
        ],
        [
            "snapshot files",
            ", ".join(f"{k} {v / MB:,.1f} MB" for k, v in b["snapshot"]["files"].items()),
        ],
        ["restart: `load_snapshot` into an empty shard", f"{r['load_snapshot_s']} s"],
        ["restart: process spawn to shard ready", f"{r['spawn_to_ready_s']} s"],
        [
            "restart: RSS baseline / peak / steady",
            " / ".join(
                f"{rrss[k] / MB:,.0f}"
                for k in ("baseline_bytes", "load_peak_bytes", "steady_bytes")
            )
            + " MB",
        ],
        [
            "RAM per utterance, all-in (restarted steady RSS / N)",
            f"{mem['all_in_per_utt_bytes']:,} B",
        ],
        [
            "RAM per utterance, index only (restarted steady − baseline) / N",
            f"{mem['delta_per_utt_bytes']:,} B",
        ],
        [
            "RAM per utterance, built process (steady − baseline) / N",
            f"{mem['built_delta_per_utt_bytes']:,} B",
        ],
        ["restarted shard answers as the built one (dense top-10)", r["answers_match_build"]],
    ]
    return _table(["in-process figure", "value"], rows)


def _pgvector(tier: dict[str, Any], n: int) -> list[str]:
    b, s = tier["build"], tier["size"]
    rows = [
        [k.removesuffix("_s").replace("_", " "), f"{v} s"] for k, v in b.items() if k.endswith("_s")
    ]
    rows += [["table heap", f"{s['heap_bytes'] / MB:,.0f} MB ({s['heap_bytes'] / n:,.0f} B/utt)"]]
    rows += [["TOAST + maps", f"{s['toast_and_fsm_bytes'] / MB:,.0f} MB"]]
    rows += [
        [f"index {k}", f"{v / MB:,.0f} MB ({v / n:,.0f} B/utt)"]
        for k, v in s["index_bytes"].items()
    ]
    rows += [
        ["table + indexes", f"{s['total_bytes'] / MB:,.0f} MB ({s['total_bytes'] / n:,.0f} B/utt)"]
    ]
    rows += [
        [
            "settings",
            ", ".join(f"{k}={v}" for k, v in tier["params"].items())
            + f", shared_buffers={s['shared_buffers']}",
        ]
    ]
    rows += [
        [f"plan, {scope}, {call}", plan]
        for scope, p in tier.get("plans", {}).items()
        for call, plan in p.items()
    ]
    if b.get("notices"):
        rows.append(["notices", "; ".join(b["notices"])])
    return _table(["pgvector figure", "value"], rows)


def _mb(value: int | None, n: int) -> str:
    return "—" if value is None else f"{value / MB:,.0f} MB ({value / n:,.0f} B/utt)"


def _milvus(tier: dict[str, Any], n: int) -> list[str]:
    b, s = tier["build"], tier["size"]
    rows = [
        [
            "feed: `MilvusTier.apply`, batches of " + str(b["feed_batch"]),
            f"{b['apply_s']} s ({b['apply_utt_per_s']:,.0f} utt/s)",
        ],
        ["flush", f"{b['flush_s']} s"],
        ["rows after build", b["count_after_build"]],
        ["dense index", b["dense_index"]],
        ["server RSS, empty", _mb(b["server_rss_empty_bytes"], n)],
        ["server RSS, after build", _mb(b["server_rss_after_build_bytes"], n)],
        ["server RSS, after the searches", _mb(s.get("server_rss_after_search_bytes"), n)],
        ["data directory on disk", _mb(b["data_dir_bytes"], n)],
        ["raw calls that failed", s.get("failed_raw_calls")],
        [
            "neighbour lookups one hit at a time, per hybrid search (`Searcher` calls"
            " `context` per hit; 0 once it uses `context_many`)",
            b["context_round_trips_per_search"],
        ],
    ]
    return _table(["Milvus figure", "value"], rows)


def render(report: dict[str, Any]) -> str:
    m, c = report["machine"], report["corpus"]
    n = c["size"]
    lines = [
        "# Scale benchmark: one node",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores,"
        f" flags {', '.join(m['cpu_flags']) or 'none of interest'},"
        f" {m['memory_bytes'] / 2**30:.0f} GiB; {m['platform']}; {report['date']}",
        "",
        "## Corpus",
        "",
    ]
    lines += _table(
        ["figure", "value"],
        [[k.replace("_", " "), v] for k, v in c.items() if not isinstance(v, dict)],
    )
    lines += ["## Targets (issue 13, item 5: one node at 1M utterances)", ""]
    if n != 1_000_000:
        lines += [f"This run has {n:,} utterances: the targets are stated for 1M.", ""]
    lines += _table(
        ["target", "measured", "limit", "met"],
        [
            [
                t["target"],
                t["measured"],
                t["limit"],
                {True: "yes", False: "**no**", None: "not measured"}[t["pass"]],
            ]
            for t in report["targets"]
        ],
    )
    lines += ["## Search latency (ms, server-side)", ""] + _latency(report)
    lines += _slowest(report)
    lines += ["## Recall", ""] + _recall(report)
    lines += [
        "Dense recall is tie-aware against an exact inner-product scan of the same scope.",
        "Lexical overlap is with the in-process tantivy BM25 (plain, turn key, top 10): for",
        "pgvector it compares `ts_rank_cd` (cover density, Snowball English) with BM25, two",
        "different rankings, so it is not a recall; the in-process tier is the reference (1.0).",
        "",
    ]
    for name, tier in report["tiers"].items():
        lines += [f"## Tier: {name}", ""]
        if "error" in tier:
            lines += [f"**Failed**: {tier['error']}", ""]
            continue
        if "not_run" in tier:
            lines += [f"**Not run on this machine**: {tier['not_run']}", ""]
            continue
        if name == "inprocess":
            lines += _inprocess(tier, n)
        elif name == "pgvector":
            lines += _pgvector(tier, n)
        else:
            lines += _milvus(tier, n)
    lines += ["## Stage times (s)", ""]
    lines += _table(["stage", "seconds"], [[k, v] for k, v in report["stages_s"].items()])
    return "\n".join(lines)
