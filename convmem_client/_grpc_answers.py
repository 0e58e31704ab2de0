"""The gRPC API's response messages as typed results: the same dataclasses as over REST.

Empty strings and unset timestamps (proto3's "not set") become ``None``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from convmem_client.models import (
    Hit,
    IngestResult,
    SearchResult,
    Transcript,
    TranscriptTurn,
    Turn,
    WriteResult,
)
from query_service.grpc_gen import memory_pb2 as pb

_ROLE_NAMES = {pb.ROLE_USER: "user", pb.ROLE_AGENT: "agent", pb.ROLE_OTHER: "other"}


def _time(ts: object) -> datetime:
    """A ``google.protobuf.Timestamp`` as an aware datetime (UTC)."""
    when = ts.ToDatetime(tzinfo=UTC)  # type: ignore[attr-defined]  # protobuf has no stubs here
    if not isinstance(when, datetime):
        raise TypeError(f"not a Timestamp: {ts!r}")
    return when


def _opt_time(msg: Any, name: str) -> datetime | None:
    return _time(getattr(msg, name)) if msg.HasField(name) else None


def turn(t: pb.Turn) -> Turn:
    return Turn(*_turn_args(t))


def _turn_args(t: pb.Turn) -> tuple[str, str, str, str, str, datetime, int]:
    return (
        t.utterance_id,
        t.conversation_id,
        t.speaker,
        _ROLE_NAMES.get(t.role, "other"),
        t.text,
        _time(t.started_at),
        t.turn,
    )


def hit(h: pb.Hit) -> Hit:
    return Hit(
        *_turn_args(h.turn),
        score=h.score,
        user_id=h.user_id or None,
        context=tuple(turn(c) for c in h.context),
    )


def ingest_result(msg: pb.IngestResponse) -> IngestResult:
    return IngestResult(accepted=msg.accepted, seq=msg.seq)


def write_result(msg: pb.WriteResponse) -> WriteResult:
    return WriteResult(seq=msg.seq)


def search_result(msg: pb.SearchResponse) -> SearchResult:
    return SearchResult(
        hits=tuple(hit(h) for h in msg.hits),
        timings_ms=dict(msg.timings_ms),
        degraded=tuple(msg.degraded),
        index_seq=msg.index_seq,
    )


def transcript(msg: pb.Transcript) -> Transcript:
    return Transcript(
        id=msg.id,
        user_id=msg.user_id or None,
        agent_id=msg.agent_id or None,
        started_at=_opt_time(msg, "started_at"),
        metadata=dict(msg.metadata),
        turns=tuple(
            TranscriptTurn(
                *_turn_args(t.turn),
                ended_at=_opt_time(t, "ended_at"),
                source="asr" if t.source == pb.SOURCE_ASR else "text",
                asr_confidence=t.asr_confidence if t.HasField("asr_confidence") else None,
            )
            for t in msg.turns
        ),
    )
