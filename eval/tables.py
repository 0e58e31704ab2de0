"""The tables of an evaluation report, as plain data (rendered by ``report_md`` and
``report_html``). Metric values are shown × 100 with one decimal, as LoCoMo reports them."""

from __future__ import annotations

from dataclasses import dataclass

from eval.summary import OVERALL, Summary

ALPHA = 0.05


@dataclass(frozen=True, slots=True)
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""


def pct(value: float) -> str:
    return f"{100 * value:.1f}"


def signed(value: float) -> str:
    return f"{100 * value:+.1f}"


def p_value(p: float, *, prefix: str = "") -> str:
    """ "0.0123", or "<0.0001"; " *" marks p < ALPHA. ``prefix="p"`` gives "p=0.0123"."""
    if p != p:  # NaN: too few queries for the test
        return f"{prefix}{'=' if prefix else ''}n/a"
    mark = " *" if p < ALPHA else ""
    if p < 0.0001:
        return f"{prefix}<0.0001{mark}"
    return f"{prefix}{'=' if prefix else ''}{p:.4f}{mark}"


def headline(s: Summary) -> Table:
    metric = f"recall@{s.k}"
    sizes = s.dataset.category_sizes()
    rows = [[f"overall (n={len(s.dataset.queries)})", *(pct(c.overall[metric]) for c in s.configs)]]
    rows += [
        [f"{cat} (n={n})", *(pct(c.by_category[cat][metric]) for c in s.configs)]
        for cat, n in sizes.items()
    ]
    return Table(
        title=f"Recall@{s.k} (%) by category",
        header=["category", *(c.config.name for c in s.configs)],
        rows=rows,
        note="Recall@k: share of a query's relevant utterances in its top k, mean over queries.",
    )


def metrics_by_group(s: Summary) -> list[Table]:
    """One table per group (overall, then each category): configs × every metric."""
    groups = [OVERALL, *s.dataset.categories]
    sizes = {OVERALL: len(s.dataset.queries), **s.dataset.category_sizes()}
    tables = []
    for g in groups:
        rows = [
            [
                c.config.name,
                *(pct((c.overall if g == OVERALL else c.by_category[g])[m]) for m in s.metrics),
            ]
            for c in s.configs
        ]
        tables.append(
            Table(
                title=f"All metrics: {g} (n={sizes[g]}, × 100)",
                header=["config", *s.metrics],
                rows=rows,
            )
        )
    return tables


def latency(s: Summary) -> Table:
    rows = []
    for c in s.configs:
        stats = c.latency_ms
        skipped = ", ".join(f"{stage} {n}" for stage, n in sorted(c.degraded.items())) or "-"
        rows.append(
            [
                c.config.name,
                *(f"{stats[key]:.2f}" for key in ("p50", "p95", "p99", "mean", "max")),
                f"{c.degraded_queries} ({skipped})",
                f"{c.config.budget_ms:g}",
            ]
        )
    return Table(
        title="Latency per query (ms)",
        header=["config", "p50", "p95", "p99", "mean", "max", "degraded queries", "budget"],
        rows=rows,
        note="Measured by the retriever around each search (in-process, or an HTTP round trip).",
    )


def significance_overall(s: Summary) -> list[Table]:
    """Per config: every metric against the baseline, overall."""
    base = s.configs[0].config.name
    tables = []
    for name, comparison in s.significance.items():
        rows = [
            [
                m,
                pct(r["base"]),
                pct(r["other"]),
                signed(r["delta"]),
                p_value(r["p"]),
                p_value(r["p_t"]),
            ]
            for m, r in comparison[OVERALL].items()
        ]
        tables.append(
            Table(
                title=f"{name} vs {base} (overall)",
                header=["metric", base, name, "Δ", "p (randomisation)", "p (t-test)"],
                rows=rows,
                note=_test_note(s),
            )
        )
    return tables


def significance_by_category(s: Summary, metric: str) -> Table:
    """Δ of ``metric`` against the baseline, per config and category, with p-values."""
    groups = [OVERALL, *s.dataset.categories]
    rows = [
        [
            name,
            *(
                f"{signed(comp[g][metric]['delta'])} ({p_value(comp[g][metric]['p'], prefix='p')})"
                for g in groups
            ),
        ]
        for name, comp in s.significance.items()
    ]
    return Table(
        title=f"Δ {metric} vs {s.configs[0].config.name} by category (× 100)",
        header=["config", *groups],
        rows=rows,
        note=_test_note(s),
    )


def _test_note(s: Summary) -> str:
    return (
        f"Two-sided paired randomisation test on per-query values ({s.permutations:,}"
        f" permutations, seed {s.seed}; Smucker et al. 2007), and a paired t-test."
        f" * marks p < {ALPHA}; no correction for multiple comparisons."
    )


def all_tables(s: Summary) -> list[Table]:
    tables = [headline(s), latency(s)]
    if s.significance:
        tables += [
            significance_by_category(s, f"recall@{s.k}"),
            significance_by_category(s, "ndcg@10"),
        ]
        tables += significance_overall(s)
    return tables + metrics_by_group(s)
