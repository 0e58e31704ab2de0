"""The live context stream's messages (WebSocket JSON; gRPC ``Converse`` maps onto them).

client: {"type": "start", "conversation_id", "user_id"?, "agent_id"?, "k"?, "budget_ms"?,
         "exclude_recent"?}
client: {"type": "turn", "speaker", "role", "text", "store"?, "utterance_id"?,
         "started_at"?}                                  (any number, in order)
server: {"type": "ready", "conversation_id", "exclude_recent", "k"}
server: {"type": "stored", "turn", "utterance_id", "seq"}   a stored turn is durable
server: {"type": "context", "turn", "hits", "timings_ms", "degraded", "superseded",
         "index_seq"}
server: {"type": "error", "turn"?, "code", "message", "retry_after_ms"?}
client: {"type": "end"}  →  server: {"type": "end", "turns": n}, then close (1000)
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from indexer.ingest import MAX_TEXT_CHARS
from indexer.models import Role
from query_service.api_models import MIN_BUDGET_MS, Id, SearchHit, Text, Time

DEFAULT_EXCLUDE_RECENT = 4


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ContextStart(_Strict):
    type: Literal["start"] = "start"
    conversation_id: Id
    user_id: Id | None = None
    agent_id: Id | None = None
    k: int = Field(default=5, ge=1, le=50)
    budget_ms: float = Field(default=50.0, ge=MIN_BUDGET_MS, le=10_000)
    #: the most recent turns of this stream (the agent holds them) are never sent back
    exclude_recent: int = Field(default=DEFAULT_EXCLUDE_RECENT, ge=0, le=1000)


class ContextTurn(_Strict):
    type: Literal["turn"] = "turn"
    speaker: Annotated[Text, StringConstraints(min_length=1, max_length=256)]
    role: Role
    text: Annotated[Text, StringConstraints(min_length=1, max_length=MAX_TEXT_CHARS)]
    store: bool = True
    utterance_id: Id | None = None
    started_at: Time | None = None

    @model_validator(mode="after")
    def _check(self) -> ContextTurn:
        if not self.text.strip():
            raise ValueError("text must not be blank")
        if self.started_at is not None and self.started_at.tzinfo is None:
            raise ValueError("started_at needs a time zone, e.g. 2026-05-01T09:00:00Z")
        return self


class ContextEvent(BaseModel):
    type: Literal["context"] = "context"
    turn: int
    hits: list[SearchHit]
    timings_ms: dict[str, float]
    degraded: list[str]
    #: turns that arrived while a search ran and were passed over (the latest wins)
    superseded: int
    index_seq: int


class StoredEvent(BaseModel):
    type: Literal["stored"] = "stored"
    turn: int
    utterance_id: str
    seq: int


class TurnError(BaseModel):
    type: Literal["error"] = "error"
    turn: int | None = None
    code: Literal["shed", "invalid", "deadline", "unavailable", "forbidden", "internal"]
    message: str
    retry_after_ms: int | None = None


StreamEvent = ContextEvent | StoredEvent | TurnError
