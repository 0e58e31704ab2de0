"""``report.html``: one self-contained page with the tables and three plots.

Plots (matplotlib, Agg canvas, embedded as base64 PNG): Recall@k curves per config, the
headline recall per category and config, and the CDF of per-query latency. Without
matplotlib (``pip install 'convmem[eval]'``) the page has the tables only.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from eval.summary import Summary
from eval.tables import Table, all_tables

if TYPE_CHECKING:
    from matplotlib.axes import Axes

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: .5em 0 1.5em; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; } .note { color: #666; font-size: 12px; }
img { max-width: 100%; }
"""


def render_table(t: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in t.header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in t.rows
    )
    note = f'<p class="note">{html.escape(t.note)}</p>' if t.note else ""
    return f"<h3>{html.escape(t.title)}</h3><table><tr>{head}</tr>{body}</table>{note}"


def render(s: Summary, *, source: str) -> str:
    d = s.dataset
    plots = _plots(s)
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in d.notes)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>convmem eval: {html.escape(d.name)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>Retrieval evaluation: {html.escape(d.name)}</h1>"
        f"<p>{html.escape(source)}: {len(d.utterances)} utterances, {len(d.queries)} queries;"
        f" baseline <code>{html.escape(s.configs[0].config.name)}</code>.</p>"
        f"{plots}{''.join(render_table(t) for t in all_tables(s))}"
        f"<h2>Dataset notes</h2><ul>{notes}</ul></body></html>\n"
    )


def _plots(s: Summary) -> str:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return "<p class='note'>Plots need matplotlib: pip install 'convmem[eval]'.</p>"

    def png(draw: Callable[[Axes], None], title: str) -> str:
        fig = Figure(figsize=(7.5, 4.2), dpi=100, layout="tight")
        ax = fig.add_subplot()
        draw(ax)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        data = base64.b64encode(buf.getvalue()).decode("ascii")
        return f'<img alt="{html.escape(title)}" src="data:image/png;base64,{data}">'

    return "".join(
        (
            png(lambda ax: _recall_curves(ax, s), "Recall@k"),
            png(lambda ax: _category_bars(ax, s), f"Recall@{s.k} by category"),
            png(lambda ax: _latency_cdf(ax, s), "Latency per query (CDF)"),
        )
    )


def _recall_curves(ax: Axes, s: Summary) -> None:
    cutoffs = sorted(int(m.split("@")[1]) for m in s.metrics if m.startswith("recall@"))
    for c in s.configs:
        ax.plot(
            cutoffs,
            [100 * c.overall[f"recall@{k}"] for k in cutoffs],
            marker="o",
            label=c.config.name,
        )
    ax.set_xscale("log")
    ax.set_xticks(cutoffs, [str(k) for k in cutoffs])
    ax.minorticks_off()
    ax.set_xlabel("k")
    ax.set_ylabel("Recall@k (%)")
    ax.legend()


def _category_bars(ax: Axes, s: Summary) -> None:
    cats = list(s.dataset.categories)
    x = np.arange(len(cats))
    width = 0.8 / len(s.configs)
    metric = f"recall@{s.k}"
    top = 0.0
    for i, c in enumerate(s.configs):
        values = [100 * c.by_category[cat][metric] for cat in cats]
        top = max([top, *values])
        ax.bar(x + i * width - 0.4 + width / 2, values, width, label=c.config.name)
    ax.set_xticks(x, cats)
    ax.set_ylabel(f"Recall@{s.k} (%)")
    ax.set_ylim(0, max(top, 1.0) * 1.25)  # room for the legend above the bars
    ax.legend(loc="upper center", ncols=min(len(s.configs), 4), fontsize="small")


def _latency_cdf(ax: Axes, s: Summary) -> None:
    for c in s.configs:
        values = np.sort(np.asarray(c.latencies_ms, dtype=np.float64))
        ax.step(
            values, np.arange(1, len(values) + 1) / len(values), where="post", label=c.config.name
        )
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("share of queries")
    ax.legend()
