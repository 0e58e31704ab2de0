"""Proto messages ↔ API models, and errors → gRPC status, for ``grpc_server``.

Requests are validated by building the REST API's pydantic models from them, so both
transports share every rule. The proto's zero values stand for "unset": ``k`` 0 → 10,
``budget_ms`` 0 → 50, ``MODE_UNSPECIFIED`` → hybrid, ``SOURCE_UNSPECIFIED`` → text, an empty
``user_id`` / ``agent_id`` → none, an unset ``Timestamp`` → none. ``ROLE_UNSPECIFIED`` is left
out, so the model reports the role as required; an enum number the proto does not define is
passed on as it is, so the model rejects it and names the field.

A ``TurnError`` that belongs to no turn of the stream (a malformed message) has ``turn`` -1.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import grpc
from pydantic import ValidationError

from indexer.errors import Conflict, IndexUnavailable, InvalidInput, NotFound, StoreError
from query_service import api_models as api
from query_service.errors import DeadlineExceeded, Forbidden, Overloaded, Unauthorized
from query_service.grpc_gen import memory_pb2 as pb
from query_service.stream_models import (
    ContextEvent,
    ContextStart,
    ContextTurn,
    StoredEvent,
    StreamEvent,
    TurnError,
)

_log = logging.getLogger(__name__)

_ROLE_IN = {pb.ROLE_USER: "user", pb.ROLE_AGENT: "agent", pb.ROLE_OTHER: "other"}
_ROLE_OUT = {name: number for number, name in _ROLE_IN.items()}
_SOURCE_IN = {pb.SOURCE_UNSPECIFIED: "text", pb.SOURCE_TEXT: "text", pb.SOURCE_ASR: "asr"}
_SOURCE_OUT = {"text": pb.SOURCE_TEXT, "asr": pb.SOURCE_ASR}
_MODE_IN = {
    pb.MODE_UNSPECIFIED: "hybrid",
    pb.MODE_HYBRID: "hybrid",
    pb.MODE_LEXICAL: "lexical",
    pb.MODE_DENSE: "dense",
}
#: the models' names of search filters whose proto fields are plural
_FILTER_NAMES = {"conversation_id": "conversation_ids", "speaker": "speakers", "role": "roles"}

Status = tuple[grpc.StatusCode, str, tuple[tuple[str, str], ...]]


# -- requests ------------------------------------------------------------------------------
def ingest_body(req: pb.IngestRequest) -> api.IngestBody:
    return api.IngestBody.model_validate({"utterances": [_utterance(u) for u in req.utterances]})


def search_body(req: pb.SearchRequest) -> api.SearchBody:
    f = req.filters
    filters: dict[str, object] = {
        "user_id": f.user_id or None,
        "conversation_id": list(f.conversation_ids) or None,
        "speaker": list(f.speakers) or None,
        "role": [_ROLE_IN.get(r, r) for r in f.roles] or None,
        "since": _time(f, "since"),
        "until": _time(f, "until"),
    }
    return api.SearchBody.model_validate(
        {
            "query": req.query,
            "k": req.k or 10,
            "mode": _MODE_IN.get(req.mode, req.mode),
            "filters": filters,
            "budget_ms": req.budget_ms or 50.0,
            "min_seq": req.min_seq if req.HasField("min_seq") else None,
            "reference_time": _time(req, "reference_time"),
        }
    )


def conversation_body(req: pb.PutConversationRequest) -> api.ConversationBody:
    return api.ConversationBody.model_validate(
        {
            "user_id": req.user_id or None,
            "agent_id": req.agent_id or None,
            "started_at": _time(req, "started_at"),
            "metadata": dict(req.metadata),
        }
    )


def context_start(req: pb.ConverseStart) -> ContextStart:
    fields: dict[str, object] = {
        "conversation_id": req.conversation_id,
        "user_id": req.user_id or None,
        "agent_id": req.agent_id or None,
    }
    if req.k:
        fields["k"] = req.k
    if req.budget_ms:
        fields["budget_ms"] = req.budget_ms
    if req.HasField("exclude_recent"):
        fields["exclude_recent"] = req.exclude_recent
    return ContextStart.model_validate(fields)


def context_turn(req: pb.ConverseTurn) -> ContextTurn:
    fields: dict[str, object] = {
        "speaker": req.speaker,
        "text": req.text,
        "store": req.store,
        "utterance_id": req.utterance_id or None,
        "started_at": _time(req, "started_at"),
    }
    if req.role != pb.ROLE_UNSPECIFIED:
        fields["role"] = _ROLE_IN.get(req.role, req.role)
    return ContextTurn.model_validate(fields)


def required_id(value: str, name: str) -> str:
    if not value.strip():
        raise InvalidInput(f"{name} is required")
    return value


def _utterance(u: pb.Utterance) -> dict[str, object]:
    fields: dict[str, object] = {
        "id": u.id,
        "conversation_id": u.conversation_id,
        "speaker": u.speaker,
        "text": u.text,
        "started_at": _time(u, "started_at"),
        "ended_at": _time(u, "ended_at"),
        "user_id": u.user_id or None,
        "agent_id": u.agent_id or None,
        "source": _SOURCE_IN.get(u.source, u.source),
        "asr_confidence": u.asr_confidence if u.HasField("asr_confidence") else None,
        "metadata": dict(u.metadata),
    }
    if u.role != pb.ROLE_UNSPECIFIED:
        fields["role"] = _ROLE_IN.get(u.role, u.role)
    if fields["started_at"] is None:
        del fields["started_at"]  # required: the model says so, naming the field
    return fields


def _time(msg: Any, name: str) -> datetime | None:  # Any: each message with a Timestamp
    if not msg.HasField(name):
        return None
    try:
        value: datetime = getattr(msg, name).ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError) as exc:
        raise InvalidInput(f"{name}: the timestamp is out of range") from exc
    return value


# -- responses -----------------------------------------------------------------------------
def search_response(r: api.SearchResponse) -> pb.SearchResponse:
    return pb.SearchResponse(
        hits=_hits(r.hits), timings_ms=r.timings_ms, degraded=r.degraded, index_seq=r.index_seq
    )


def transcript(c: api.ConversationResponse) -> pb.Transcript:
    return pb.Transcript(
        id=c.id,
        user_id=c.user_id or "",
        agent_id=c.agent_id or "",
        started_at=c.started_at,
        metadata=c.metadata,
        turns=[
            pb.TranscriptTurn(
                turn=_turn(t),
                ended_at=t.ended_at,
                source=_SOURCE_OUT[t.source],
                asr_confidence=t.asr_confidence,
            )
            for t in c.turns
        ],
    )


def converse_event(event: StreamEvent) -> pb.ConverseEvent:
    if isinstance(event, ContextEvent):
        return pb.ConverseEvent(
            context=pb.ContextEvent(
                turn=event.turn,
                hits=_hits(event.hits),
                timings_ms=event.timings_ms,
                degraded=event.degraded,
                superseded=event.superseded,
                index_seq=event.index_seq,
            )
        )
    if isinstance(event, StoredEvent):
        return pb.ConverseEvent(
            stored=pb.Stored(turn=event.turn, utterance_id=event.utterance_id, seq=event.seq)
        )
    return pb.ConverseEvent(error=turn_error(event))


def turn_error(e: TurnError) -> pb.TurnError:
    return pb.TurnError(
        turn=-1 if e.turn is None else e.turn,
        code=e.code,
        message=e.message,
        retry_after_ms=e.retry_after_ms or 0,
    )


def _hits(hits: Sequence[api.SearchHit]) -> list[pb.Hit]:
    return [
        pb.Hit(
            turn=_turn(h),
            score=h.score,
            user_id=h.user_id or "",
            context=[_turn(c) for c in h.context],
        )
        for h in hits
    ]


def _turn(t: api.Turn) -> pb.Turn:
    return pb.Turn(
        utterance_id=t.utterance_id,
        conversation_id=t.conversation_id,
        speaker=t.speaker,
        role=_ROLE_OUT[t.role],
        text=t.text,
        started_at=t.started_at,
        turn=t.turn,
    )


# -- errors --------------------------------------------------------------------------------
def describe(exc: ValidationError) -> str:
    """The first problem, in the proto's field names: ``utterances.0.role is required``."""
    errors = exc.errors(include_url=False)
    if not errors:
        return "invalid request"
    first = _path(errors[0]["loc"])
    # a union's branches report one problem each, at different depths: the deepest says most
    same = [e for e in errors if _path(e["loc"])[: len(first)] == first]
    error = max(same, key=lambda e: len(_path(e["loc"])))
    path = _path(error["loc"])
    where = ".".join(str(p) for p in path) or "request"
    if error["type"] == "missing":
        return f"{where} is required"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}"


def _path(loc: Sequence[int | str]) -> tuple[int | str, ...]:
    """A pydantic location without its union-branch tags, filters named as in the proto."""
    path = tuple(p for p in loc if isinstance(p, int) or p.isidentifier())
    if len(path) >= 2 and path[0] == "filters" and isinstance(path[1], str):
        path = ("filters", _FILTER_NAMES.get(path[1], path[1]), *path[2:])
    return path


def status_of(exc: Exception) -> Status | None:
    """The status a client gets for ``exc``; None: an internal error (the caller logs it)."""
    c = grpc.StatusCode
    if isinstance(exc, ValidationError):
        return c.INVALID_ARGUMENT, describe(exc), ()
    if isinstance(exc, Overloaded):
        retry_ms = str(max(1, round(exc.retry_after_s * 1000)))
        return c.RESOURCE_EXHAUSTED, str(exc), (("retry-after-ms", retry_ms),)
    mapped: Mapping[type[Exception], grpc.StatusCode] = {
        Unauthorized: c.UNAUTHENTICATED,
        Forbidden: c.PERMISSION_DENIED,
        NotFound: c.NOT_FOUND,
        Conflict: c.FAILED_PRECONDITION,
        InvalidInput: c.INVALID_ARGUMENT,
        IndexUnavailable: c.UNAVAILABLE,
        DeadlineExceeded: c.DEADLINE_EXCEEDED,
    }
    for cls, code in mapped.items():  # NotFound and Conflict before StoreError, their base
        if isinstance(exc, cls):
            return code, str(exc), ()
    if isinstance(exc, StoreError):
        _log.error("store error: %s", exc)
        return c.UNAVAILABLE, "the store of record is unavailable; retry later", ()
    return None
