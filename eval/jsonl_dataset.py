"""Our evaluation dataset format: JSONL, one utterance or one judged query per line.

.. code-block:: text

    {"type": "utterance", "id": "u1", "conversation_id": "c1", "user_id": "alice",
     "speaker": "Alice", "role": "user", "text": "...", "started_at": "2026-03-02T09:00:00Z"}
    {"type": "query", "id": "q1", "text": "when is the dentist?", "qrels": {"u1": 1},
     "category": "temporal", "user_id": "alice"}

An utterance line holds the fields of ``indexer.loaders``' JSONL (those of
``POST /v1/utterances``). A query line holds ``id``, ``text`` and ``qrels`` (utterance id ->
integer grade, > 0 relevant), and optionally ``category`` and ``user_id`` (the scope the query
is searched in). Lines may come in any order; blank lines are skipped. See docs/EVAL.md.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from eval.dataset import UNCATEGORISED, Dataset, EvalQuery, validate
from eval.errors import DatasetError
from indexer.loaders import LoadError, parse_time, utterance_from_dict, utterance_to_dict
from indexer.models import UtteranceIn

_QUERY_FIELDS = {"type", "id", "text", "qrels", "category", "user_id", "asked_at"}


def read_jsonl_dataset(path: Path) -> Dataset:
    """Read and validate a dataset; raises ``DatasetError`` naming the file and line."""
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    utterances: list[UtteranceIn] = []
    queries: list[EvalQuery] = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError("a line must be a JSON object")
                kind = record.get("type")
                if kind == "utterance":
                    utterances.append(
                        utterance_from_dict({k: v for k, v in record.items() if k != "type"})
                    )
                elif kind == "query":
                    queries.append(query_from_dict(record))
                else:
                    raise ValueError(f'"type" must be "utterance" or "query", got {kind!r}')
            except (ValueError, KeyError, TypeError, LoadError) as exc:
                raise DatasetError(f"{path}:{lineno}: {exc}") from exc
    if not utterances:
        raise DatasetError(f"{path}: no utterances")
    validate(utterances, queries, str(path))
    return Dataset(name=path.stem, utterances=tuple(utterances), queries=tuple(queries))


def query_from_dict(d: dict[str, Any]) -> EvalQuery:
    """Parse one query line; raises ``ValueError`` on a missing or mistyped field."""
    unknown = sorted(set(d) - _QUERY_FIELDS)
    if unknown:
        raise ValueError(f"unknown query field(s) {', '.join(unknown)}")
    for name in ("id", "text"):
        if not isinstance(d.get(name), str) or not d[name].strip():
            raise ValueError(f"query field {name!r} must be a non-empty string")
    qrels = d.get("qrels")
    if not isinstance(qrels, dict) or not qrels:
        raise ValueError('query field "qrels" must be a non-empty object {utterance id: grade}')
    for doc, grade in qrels.items():
        if isinstance(grade, bool) or not isinstance(grade, numbers.Integral):
            raise ValueError(f"qrels grade of {doc!r} must be an integer, got {grade!r}")
    for name in ("category", "user_id"):
        if d.get(name) is not None and (not isinstance(d[name], str) or not d[name].strip()):
            raise ValueError(f"query field {name!r} must be a non-empty string when given")
    return EvalQuery(
        id=d["id"],
        text=d["text"],
        qrels={str(doc): int(grade) for doc, grade in qrels.items()},
        category=d.get("category") or UNCATEGORISED,
        user_id=d.get("user_id"),
        asked_at=_asked_at(d.get("asked_at")),
    )


def _asked_at(value: object) -> datetime | None:
    if value is None:
        return None
    try:
        if not isinstance(value, str):
            raise ValueError("not a string")
        return parse_time(value)  # the utterances' own time parser
    except ValueError as exc:
        raise ValueError(
            f'query field "asked_at" must be an ISO 8601 time with a time zone, got {value!r}'
        ) from exc


def write_jsonl_dataset(dataset: Dataset, path: Path) -> None:
    """Write ``dataset`` in this format (utterances first, then queries)."""
    with path.open("w", encoding="utf-8") as fh:
        for line in _lines(dataset):
            fh.write(json.dumps(line, ensure_ascii=False) + "\n")


def _lines(dataset: Dataset) -> Iterable[dict[str, object]]:
    for u in dataset.utterances:
        yield {"type": "utterance", **utterance_to_dict(u)}
    for q in dataset.queries:
        line: dict[str, object] = {"type": "query", "id": q.id, "text": q.text}
        line["qrels"] = dict(q.qrels)
        if q.category != UNCATEGORISED:
            line["category"] = q.category
        if q.user_id is not None:
            line["user_id"] = q.user_id
        if q.asked_at is not None:
            line["asked_at"] = q.asked_at.isoformat()
        yield line
