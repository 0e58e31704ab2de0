"""LoCoMo as an evaluation dataset: its questions, judged against their evidence turns.

Maharana, A., Lee, D.-H., Tulyakov, S., Bansal, M., Barbieri, F., & Fang, Y. (2024).
Evaluating very long-term conversational memory of LLM agents. ACL 2024.

Utterances come from ``indexer.loaders.read_locomo`` (ids ``"{sample_id}:{dia_id}"``, user
``sample_id``). Each question becomes query ``"{sample_id}:q{n}"`` (n counts from 1 in the
sample's ``qa`` list), scoped to its own conversation (``user_id = sample_id``), with its
evidence turns as the relevant utterances (grade 1).

Evidence ids in the file are mostly ``"D{session}:{turn}"``, but a few are malformed: several
ids in one string ("D8:6; D9:17", "D9:1 D4:4"), a misplaced colon ("D:11:26"), a leading
zero ("D30:05"), or a turn that does not exist. ``normalize_evidence`` rewrites what it can
and drops the rest; questions left without evidence are excluded. Both are counted in the
dataset's ``counts`` and described in its ``notes``.

The licence of LoCoMo (CC BY-NC 4.0) forbids copying it into this project: read it from a path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from eval.dataset import Dataset, EvalQuery, validate
from eval.errors import DatasetError
from indexer.loaders import LoadError, read_locomo

#: The ``category`` numbers of locomo10.json, checked against its questions (see docs/EVAL.md):
#: 1 has several evidence turns per question, 2 asks "when", 3 asks what is "likely",
#: 4 asks one fact, 5 asks about the wrong speaker and has an ``adversarial_answer``.
CATEGORIES: dict[int, str] = {
    1: "multi-hop",
    2: "temporal",
    3: "open-domain",
    4: "single-hop",
    5: "adversarial",
}

_SPLIT = re.compile(r"[;,\s]+")
_LOOSE_ID = re.compile(r"D:?(\d+):0*(\d+)")


@dataclass(frozen=True, slots=True)
class Evidence:
    """The evidence of one question after normalisation."""

    ids: tuple[str, ...]  # "D1:3" form, distinct, in input order
    fixed: tuple[tuple[str, tuple[str, ...]], ...]  # (malformed raw entry, the ids read from it)
    dropped: tuple[str, ...]  # raw entries, or parts of them, that name no existing turn


def normalize_evidence(raw: Sequence[str], known: Collection[str]) -> Evidence:
    """Rewrite raw evidence entries into dia ids of existing turns (``known``).

    An entry is split on ``;``, ``,`` and whitespace; each part is read as ``D<s>:<t>``,
    tolerating a colon after the ``D`` and leading zeros in the turn, and kept if that turn
    exists. An entry that was not already a known id counts as fixed if it yielded at least
    one id; each part that yielded none is dropped.
    """
    ids: list[str] = []
    fixed: list[tuple[str, tuple[str, ...]]] = []
    dropped: list[str] = []
    for entry in raw:
        entry = str(entry)
        if entry in known:
            ids.append(entry)
            continue
        found: list[str] = []
        for part in filter(None, _SPLIT.split(entry.strip())):
            m = _LOOSE_ID.fullmatch(part)
            dia_id = f"D{int(m.group(1))}:{int(m.group(2))}" if m else None
            if dia_id is not None and dia_id in known:
                found.append(dia_id)
            else:
                dropped.append(part)
        if found:
            ids.extend(found)
            fixed.append((entry, tuple(found)))
        elif not entry.strip():
            dropped.append(entry)
    return Evidence(ids=tuple(dict.fromkeys(ids)), fixed=tuple(fixed), dropped=tuple(dropped))


def read_locomo_dataset(path: Path) -> Dataset:
    """Load locomo10.json (or a file of the same shape) as a validated ``Dataset``."""
    try:
        utterances = tuple(read_locomo(path))
        samples = json.loads(path.read_text(encoding="utf-8"))
    except (LoadError, OSError, ValueError) as exc:
        raise DatasetError(str(exc)) from exc
    known: dict[str, set[str]] = {}
    last: dict[str, datetime] = {}  # each sample's last turn: when its questions are asked
    for u in utterances:
        sample_id, _, dia_id = u.id.partition(":")
        known.setdefault(sample_id, set()).add(dia_id)
        last[sample_id] = max(last.get(sample_id, u.started_at), u.started_at)
    queries: list[EvalQuery] = []
    notes: list[str] = []
    counts = {"questions": 0, "evidence_fixed": 0, "evidence_dropped": 0, "excluded": 0}
    for sample in samples:
        try:
            sample_queries = _sample_queries(sample, known, notes, counts, last)
        except (KeyError, TypeError, ValueError) as exc:
            sid = sample.get("sample_id")
            raise DatasetError(f"{path}: sample {sid!r}: bad qa entry: {exc}") from exc
        queries.extend(sample_queries)
    validate(utterances, queries, str(path))
    summary = (
        f"LoCoMo: {counts['questions']} questions; {counts['evidence_fixed']} malformed evidence"
        f" entries fixed, {counts['evidence_dropped']} evidence ids dropped (no such turn);"
        f" {counts['excluded']} questions excluded for lack of valid evidence"
    )
    return Dataset(
        name=path.stem,
        utterances=utterances,
        queries=tuple(queries),
        notes=(summary, *notes),
        category_order=tuple(CATEGORIES.values()),
        counts={**counts, "queries": len(queries), "utterances": len(utterances)},
    )


def _sample_queries(
    sample: dict[str, Any],
    known: dict[str, set[str]],
    notes: list[str],
    counts: dict[str, int],
    last: dict[str, datetime],
) -> list[EvalQuery]:
    sid = str(sample["sample_id"])
    out: list[EvalQuery] = []
    for n, qa in enumerate(sample.get("qa") or [], 1):
        counts["questions"] += 1
        qid = f"{sid}:q{n}"
        evidence = normalize_evidence(qa.get("evidence") or [], known.get(sid, set()))
        counts["evidence_fixed"] += len(evidence.fixed)
        counts["evidence_dropped"] += len(evidence.dropped)
        for entry, read_as in evidence.fixed:
            notes.append(f"{qid}: evidence {entry!r} read as {', '.join(read_as)}")
        for part in evidence.dropped:
            notes.append(f"{qid}: evidence {part!r} dropped (no such turn in {sid})")
        if not evidence.ids:
            counts["excluded"] += 1
            notes.append(f"{qid}: excluded (no valid evidence)")
            continue
        category = int(qa["category"])
        out.append(
            EvalQuery(
                id=qid,
                text=str(qa["question"]),
                qrels={f"{sid}:{dia_id}": 1 for dia_id in evidence.ids},
                category=CATEGORIES.get(category, f"category-{category}"),
                user_id=sid,
                asked_at=last.get(sid),
            )
        )
    return out
