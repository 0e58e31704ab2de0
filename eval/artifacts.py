"""Write an evaluation's results into a directory.

metrics.json      macro-averages overall and per category, latency, significance
per_query.json    every query's metric values, latency and degraded stages (for compare)
<config>.run      TREC run per config (doc ids = utterance ids)
qrels.txt         TREC qrels
report.md         the tables in Markdown
report.html       the tables and plots in one self-contained page
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from eval import report_html, report_md
from eval.runner import ConfigRun
from eval.summary import PerQuery, Summary, per_query_json
from eval.trec import write_qrels, write_run

RUN_TAG_PREFIX = "convmem"


def write_results(
    out_dir: Path,
    summary: Summary,
    runs: Sequence[ConfigRun],
    per_query: dict[str, PerQuery],
    *,
    source: str,
) -> list[Path]:
    """Write every file (creating ``out_dir``); returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [
        _json(out_dir / "metrics.json", {"source": source, **summary.to_json()}),
        _json(out_dir / "per_query.json", per_query_json(summary.dataset, runs, per_query)),
    ]
    qrels_path = out_dir / "qrels.txt"
    write_qrels(qrels_path, summary.dataset.qrels())
    written.append(qrels_path)
    for run in runs:
        path = out_dir / f"{run.config.name}.run"
        write_run(path, run.scored(), tag=f"{RUN_TAG_PREFIX}-{run.config.name}")
        written.append(path)
    for name, text in (
        ("report.md", report_md.render(summary, source=source)),
        ("report.html", report_html.render(summary, source=source)),
    ):
        (out_dir / name).write_text(text, encoding="utf-8")
        written.append(out_dir / name)
    return written


def _json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
