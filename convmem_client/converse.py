"""The live context stream (gRPC ``Converse``): the turns a client sends, the events it gets.

Send each new turn of a live conversation as a ``LiveTurn``; memory answers with
``ContextEvent`` (what it holds that is relevant, never a memory this stream sent before),
``StoredEvent`` (a turn with ``store`` is durable) and ``TurnFailed`` (a turn's search or
store was refused or failed; the stream goes on). While a search runs, newer turns replace
each other: an event answers the latest and counts the ``superseded`` ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from convmem_client import _grpc, _grpc_answers
from convmem_client.models import Hit
from query_service.grpc_gen import memory_pb2 as pb


@dataclass(frozen=True, slots=True)
class LiveTurn:
    speaker: str
    role: str
    text: str
    #: store it durably (as ``ingest`` does) before it is searched
    store: bool = True
    #: None: the service makes one from the conversation id and the turn's number
    utterance_id: str | None = None
    #: None: now
    started_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ContextEvent:
    #: the 0-based number, on this stream, of the turn answered
    turn: int
    hits: tuple[Hit, ...]
    timings_ms: Mapping[str, float]
    degraded: tuple[str, ...]
    superseded: int
    index_seq: int


@dataclass(frozen=True, slots=True)
class StoredEvent:
    turn: int
    utterance_id: str
    seq: int


@dataclass(frozen=True, slots=True)
class TurnFailed:
    """``code``: shed (retry after ``retry_after_ms``), invalid, deadline, unavailable,
    internal; ``turn`` is None when the message could not be read as a turn."""

    turn: int | None
    code: str
    message: str
    retry_after_ms: int | None


ConverseEvent = ContextEvent | StoredEvent | TurnFailed


def start_request(
    conversation_id: str,
    *,
    user_id: str | None,
    agent_id: str | None,
    k: int | None,
    budget_ms: float | None,
    exclude_recent: int | None,
) -> object:
    start = pb.ConverseStart(
        conversation_id=conversation_id,
        user_id=user_id or "",
        agent_id=agent_id or "",
        k=k or 0,
        budget_ms=budget_ms or 0.0,
    )
    if exclude_recent is not None:  # unset: the service's default
        start.exclude_recent = exclude_recent
    return pb.ConverseRequest(start=start)


def turn_request(t: LiveTurn) -> object:
    msg = pb.ConverseTurn(
        utterance_id=t.utterance_id or "",
        speaker=t.speaker,
        role=_grpc.role(t.role),
        text=t.text,
        store=t.store,
    )
    when = _grpc.aware(t.started_at)
    if when is not None:
        msg.started_at.FromDatetime(when)
    return pb.ConverseRequest(turn=msg)


def event(msg: Any) -> ConverseEvent:
    kind = msg.WhichOneof("kind")
    if kind == "context":
        c = msg.context
        return ContextEvent(
            turn=c.turn,
            hits=tuple(_grpc_answers.hit(h) for h in c.hits),
            timings_ms=dict(c.timings_ms),
            degraded=tuple(c.degraded),
            superseded=c.superseded,
            index_seq=c.index_seq,
        )
    if kind == "stored":
        s = msg.stored
        return StoredEvent(turn=s.turn, utterance_id=s.utterance_id, seq=s.seq)
    e = msg.error
    return TurnFailed(
        turn=None if e.turn < 0 else e.turn,
        code=e.code or "internal",
        message=e.message,
        retry_after_ms=e.retry_after_ms or None,
    )
