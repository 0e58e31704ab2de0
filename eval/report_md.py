"""``report.md``: the evaluation's tables in Markdown."""

from __future__ import annotations

from eval.summary import Summary, depth
from eval.tables import Table, all_tables

MAX_NOTES = 40


def render_table(t: Table) -> str:
    def row(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    lines = [f"### {t.title}", "", row(t.header), "|" + "---|" * len(t.header)]
    lines += [row(r) for r in t.rows]
    if t.note:
        lines += ["", t.note]
    return "\n".join(lines) + "\n"


def render(s: Summary, *, source: str) -> str:
    d = s.dataset
    sizes = ", ".join(f"{c} {n}" for c, n in d.category_sizes().items())
    configs = "\n".join(
        f"- `{c.config.name}`: "
        + ", ".join(f"{key}={value}" for key, value in c.config.as_dict().items())
        for c in s.configs
    )
    parts = [
        f"# Retrieval evaluation: {d.name}",
        "",
        f"- source: `{source}`",
        f"- {len(d.utterances)} utterances, {len(d.queries)} queries ({sizes})",
        f"- headline cutoff k = {s.k}; metrics read the top {depth(s.metrics)} results",
        f"- baseline for significance: `{s.configs[0].config.name}`",
        "",
        "## Configs",
        "",
        configs,
        "",
        "## Results",
        "",
    ]
    parts += [render_table(t) for t in all_tables(s)]
    if d.notes:
        parts += ["## Dataset notes", ""]
        parts += [f"- {n}" for n in d.notes[:MAX_NOTES]]
        if len(d.notes) > MAX_NOTES:
            parts.append(f"- … and {len(d.notes) - MAX_NOTES} more (see metrics.json)")
        parts.append("")
    return "\n".join(parts)
