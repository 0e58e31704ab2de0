"""TREC qrels and run files, so results can be cross-checked with trec_eval or ranx.

qrels: ``query_id iteration doc_id grade`` (iteration is written as 0 and ignored on read).
run:   ``query_id Q0 doc_id rank score tag``, best first.

trec_eval orders a query's documents by score (ties by doc id), not by the rank column, so
``write_run`` makes each query's scores strictly decreasing as written: the engine's scores
when they already are, else ``n, n-1, ..., 1`` for that query. ``read_run`` orders by score,
then by rank, which gives back the ranking that was written. Ids may not contain whitespace.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from eval.errors import DatasetError

Ranking = Sequence[tuple[str, float]]


def write_qrels(path: Path, qrels: Mapping[str, Mapping[str, int]]) -> None:
    lines = []
    for qid, judged in qrels.items():
        for doc_id, grade in judged.items():
            lines.append(f"{_token(qid)} 0 {_token(doc_id)} {int(grade)}\n")
    path.write_text("".join(lines), encoding="utf-8")


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    for lineno, fields in _rows(path, 4):
        qid, _iteration, doc_id, grade = fields
        try:
            qrels.setdefault(qid, {})[doc_id] = int(grade)
        except ValueError as exc:
            raise DatasetError(f"{path}:{lineno}: grade {grade!r} is not an integer") from exc
    return qrels


def write_run(path: Path, run: Mapping[str, Ranking], tag: str) -> None:
    """Write ``run`` (query id -> [(doc id, score)], best first)."""
    lines = []
    for qid, ranking in run.items():
        scores = [_fmt(score) for _, score in ranking]
        if not _strictly_decreasing([float(s) for s in scores]):
            scores = [str(len(ranking) - i) for i in range(len(ranking))]
        for rank, ((doc_id, _), score) in enumerate(zip(ranking, scores, strict=True), 1):
            lines.append(f"{_token(qid)} Q0 {_token(doc_id)} {rank} {score} {_token(tag)}\n")
    path.write_text("".join(lines), encoding="utf-8")


def read_run(path: Path) -> dict[str, list[tuple[str, float]]]:
    """query id -> [(doc id, score)], ordered by score (descending), then rank."""
    rows: dict[str, list[tuple[float, int, str]]] = {}
    for lineno, fields in _rows(path, 6):
        qid, _q0, doc_id, rank, score, _tag = fields
        try:
            rows.setdefault(qid, []).append((-float(score), int(rank), doc_id))
        except ValueError as exc:
            raise DatasetError(f"{path}:{lineno}: bad rank or score") from exc
    return {qid: [(d, -s) for s, _, d in sorted(entries)] for qid, entries in rows.items()}


def _rows(path: Path, n_fields: int) -> list[tuple[int, list[str]]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read: {exc}") from exc
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != n_fields:
            raise DatasetError(f"{path}:{lineno}: expected {n_fields} fields, got {len(fields)}")
        rows.append((lineno, fields))
    return rows


def _token(value: str) -> str:
    if not value or any(c.isspace() for c in value):
        raise ValueError(f"TREC ids must be non-empty and without whitespace, got {value!r}")
    return value


def _fmt(score: float) -> str:
    if not math.isfinite(score):
        raise ValueError(f"scores must be finite, got {score!r}")
    return format(score, ".9g")


def _strictly_decreasing(values: Sequence[float]) -> bool:
    return all(a > b for a, b in zip(values, values[1:], strict=False))
