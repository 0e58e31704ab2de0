"""The REST API's answers as typed results: JSON objects in, frozen dataclasses out.

A field of the wrong type is an ``ApiError`` ("Bad response"), never a wrong value passed on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TypeVar

from convmem_client.errors import ApiError
from convmem_client.models import (
    Hit,
    IngestResult,
    SearchResult,
    Transcript,
    TranscriptTurn,
    Turn,
    WriteResult,
)

T = TypeVar("T")
Json = Mapping[str, object]


class _BadResponse(ApiError):
    def __init__(self, detail: str) -> None:
        super().__init__(200, "Bad response", detail)


def _int(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise _BadResponse(f"expected an integer, got {value!r}")


def _float(value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise _BadResponse(f"expected a number, got {value!r}")


def _time(value: object) -> datetime:
    try:
        return datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise _BadResponse(f"expected an ISO time, got {value!r}") from exc


def _opt(value: object, read: Callable[[object], T]) -> T | None:
    return None if value is None else read(value)


def _objects(value: object) -> list[Json]:
    if value is None:
        return []
    if isinstance(value, list) and all(isinstance(v, dict) for v in value):
        return value
    raise _BadResponse(f"expected a list of objects, got {value!r}")


def _strings(value: object) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def _str_map(value: object) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


TurnArgs = tuple[str, str, str, str, str, datetime, int]


def _turn_args(t: Json) -> TurnArgs:
    return (
        str(t["utterance_id"]),
        str(t["conversation_id"]),
        str(t["speaker"]),
        str(t["role"]),
        str(t["text"]),
        _time(t["started_at"]),
        _int(t["turn"]),
    )


def ingest_result(data: Json) -> IngestResult:
    return IngestResult(accepted=_int(data["accepted"]), seq=_int(data["seq"]))


def write_result(data: Json) -> WriteResult:
    return WriteResult(seq=_int(data["seq"]))


def _hit(h: Json) -> Hit:
    return Hit(
        *_turn_args(h),
        score=_float(h["score"]),
        user_id=_opt(h.get("user_id"), str),
        context=tuple(Turn(*_turn_args(c)) for c in _objects(h.get("context"))),
    )


def search_result(data: Json) -> SearchResult:
    timings = data.get("timings_ms")
    return SearchResult(
        hits=tuple(_hit(h) for h in _objects(data.get("hits"))),
        timings_ms=(
            {str(k): _float(v) for k, v in timings.items()} if isinstance(timings, dict) else {}
        ),
        degraded=_strings(data.get("degraded")),
        index_seq=_int(data.get("index_seq", 0)),
    )


def transcript(data: Json) -> Transcript:
    return Transcript(
        id=str(data["id"]),
        user_id=_opt(data.get("user_id"), str),
        agent_id=_opt(data.get("agent_id"), str),
        started_at=_opt(data.get("started_at"), _time),
        metadata=_str_map(data.get("metadata")),
        turns=tuple(
            TranscriptTurn(
                *_turn_args(t),
                ended_at=_opt(t.get("ended_at"), _time),
                source=str(t.get("source") or "text"),
                asr_confidence=_opt(t.get("asr_confidence"), _float),
            )
            for t in _objects(data.get("turns"))
        ),
    )
