"""Read utterances from files: our JSONL format, and LoCoMo-format JSON.

JSONL: one utterance per line with the fields of ``POST /v1/utterances`` (``id``,
``conversation_id``, ``speaker``, ``role``, ``text``, ``started_at``; optional ``user_id``,
``agent_id``, ``ended_at``, ``source``, ``asr_confidence``, ``metadata``).
``utterance_to_dict`` writes the same shape (for files and for the REST body).

LoCoMo: a list of samples. Utterance id ``"{sample_id}:{dia_id}"``, conversation id
``"{sample_id}:session_{n}"``, user_id ``sample_id``; ``started_at`` is the session's date
plus one minute per turn (the data gives only a date and time per session). Speaker A is
role ``user``, speaker B ``other``. A shared photo's caption is appended as
``[shares a photo: ...]`` since the caption is what was "said" about it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from indexer.models import Role, Source, UtteranceIn


class LoadError(ValueError):
    """A file that cannot be read as the format it claims (names the file and line)."""


def read_jsonl(path: Path) -> Iterator[UtteranceIn]:
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield utterance_from_dict(json.loads(line))
            except (ValueError, KeyError, TypeError) as exc:
                raise LoadError(f"{path}:{lineno}: {exc}") from exc


def utterance_from_dict(d: dict[str, Any]) -> UtteranceIn:
    missing = [
        f for f in ("id", "conversation_id", "speaker", "role", "text", "started_at") if f not in d
    ]
    if missing:
        raise KeyError(f"missing field(s) {', '.join(missing)}")
    return UtteranceIn(
        id=str(d["id"]),
        conversation_id=str(d["conversation_id"]),
        speaker=str(d["speaker"]),
        role=Role(d["role"]),
        text=str(d["text"]),
        started_at=parse_time(d["started_at"]),
        ended_at=parse_time(d["ended_at"]) if d.get("ended_at") else None,
        user_id=d.get("user_id"),
        agent_id=d.get("agent_id"),
        source=Source(d.get("source", Source.TEXT.value)),
        asr_confidence=float(d["asr_confidence"]) if d.get("asr_confidence") is not None else None,
        metadata={str(k): str(v) for k, v in (d.get("metadata") or {}).items()},
    )


def utterance_to_dict(u: UtteranceIn) -> dict[str, object]:
    """``u`` as a JSONL line / ``POST /v1/utterances`` item (optional fields only when set)."""
    d: dict[str, object] = {
        "id": u.id,
        "conversation_id": u.conversation_id,
        "speaker": u.speaker,
        "role": u.role.value,
        "text": u.text,
        "started_at": u.started_at.isoformat(),
    }
    if u.ended_at is not None:
        d["ended_at"] = u.ended_at.isoformat()
    for name in ("user_id", "agent_id"):
        if getattr(u, name) is not None:
            d[name] = getattr(u, name)
    if u.source is not Source.TEXT:
        d["source"] = u.source.value
    if u.asr_confidence is not None:
        d["asr_confidence"] = u.asr_confidence
    if u.metadata:
        d["metadata"] = dict(u.metadata)
    return d


def parse_time(value: str) -> datetime:
    """An ISO 8601 time that must carry a time zone (``Z`` accepted); ``ValueError`` else."""
    t = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if t.tzinfo is None:
        raise ValueError(f"timestamp {value!r} needs a time zone")
    return t


_LOCOMO_DATE = "%I:%M %p on %d %B, %Y"
_SESSION = re.compile(r"^session_(\d+)$")


def parse_locomo_date(text: str) -> datetime:
    """'1:56 pm on 8 May, 2023' -> 2023-05-08T13:56Z (LoCoMo gives no time zone)."""
    try:
        return datetime.strptime(text.strip(), _LOCOMO_DATE).replace(tzinfo=UTC)
    except ValueError as exc:
        raise LoadError(f"unrecognised LoCoMo session date {text!r}") from exc


def read_locomo(path: Path) -> Iterator[UtteranceIn]:
    try:
        samples = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LoadError(f"{path}: not readable JSON: {exc}") from exc
    if not isinstance(samples, list) or not all(isinstance(s, dict) for s in samples):
        raise LoadError(f"{path}: a LoCoMo file is a JSON list of samples")
    for sample in samples:
        try:
            yield from _locomo_sample(sample)
        except (KeyError, TypeError) as exc:
            raise LoadError(f"{path}: sample {sample.get('sample_id')!r}: {exc}") from exc


def _locomo_sample(sample: dict[str, Any]) -> Iterator[UtteranceIn]:
    sid = str(sample["sample_id"])
    conv = sample["conversation"]
    roles = {conv["speaker_a"]: Role.USER, conv["speaker_b"]: Role.OTHER}
    sessions = sorted(
        (int(m.group(1)), key) for key in conv if (m := _SESSION.match(key)) and conv[key]
    )
    for n, key in sessions:
        start = parse_locomo_date(conv[f"{key}_date_time"])
        for i, turn in enumerate(conv[key]):
            text = str(turn.get("text", "")).strip()
            caption = turn.get("blip_caption")
            if caption:
                text = f"{text} [shares a photo: {caption}]".strip()
            if not text:
                continue
            yield UtteranceIn(
                id=f"{sid}:{turn['dia_id']}",
                conversation_id=f"{sid}:session_{n}",
                speaker=str(turn["speaker"]),
                role=roles.get(turn["speaker"], Role.OTHER),
                text=text,
                started_at=start + timedelta(minutes=i),
                user_id=sid,
            )


def read_any(path: Path, fmt: str | None = None) -> Iterator[UtteranceIn]:
    """Pick the reader by ``fmt`` ("jsonl" | "locomo") or by the file's suffix."""
    if not path.is_file():
        raise LoadError(f"{path}: no such file")
    fmt = fmt or (
        "jsonl" if path.suffix == ".jsonl" else "locomo" if path.suffix == ".json" else None
    )
    if fmt == "jsonl":
        return read_jsonl(path)
    if fmt == "locomo":
        return read_locomo(path)
    raise LoadError(f"{path}: unknown format {fmt!r}; use jsonl or locomo")
