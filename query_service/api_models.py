"""Pydantic models of the REST API (kept apart from the domain dataclasses)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from indexer.ingest import MAX_BATCH, MAX_TEXT_CHARS
from indexer.models import Role, Source

#: the smallest budget a search can be given: less than this could never be met
MIN_BUDGET_MS = 10.0


def storable(value: str) -> str:
    """Text PostgreSQL can store: no NUL character, no lone UTF-16 surrogate."""
    if "\x00" in value:
        raise ValueError("must not contain the NUL character (\\u0000)")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("must be valid Unicode (a lone surrogate is not)") from exc
    return value


def in_utc_range(value: datetime) -> datetime:
    """A time the store can give back: in UTC it falls within years 1 to 9999 (an offset can
    move a time written as 0001-01-01 or 9999-12-31 outside them)."""
    if value.tzinfo is not None:
        try:
            value.astimezone(UTC)
        except OverflowError as exc:
            raise ValueError("is out of range: in UTC it is before year 1 or after 9999") from exc
    return value


Text = Annotated[str, AfterValidator(storable)]
#: a time that is stored (naive ones are refused by each model, which names the field)
Time = Annotated[datetime, AfterValidator(in_utc_range)]
Id = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=256),
    AfterValidator(storable),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UtteranceBody(_Strict):
    id: Id
    conversation_id: Id
    speaker: Annotated[Text, StringConstraints(min_length=1, max_length=256)]
    role: Role
    text: Annotated[Text, StringConstraints(min_length=1, max_length=MAX_TEXT_CHARS)]
    started_at: Time
    ended_at: Time | None = None
    user_id: Id | None = None
    agent_id: Id | None = None
    source: Source = Source.TEXT
    #: kept to 6 decimals: the store's single-precision column cannot hold a subnormal
    asr_confidence: (
        Annotated[float, Field(ge=0.0, le=1.0), AfterValidator(lambda x: round(x, 6))] | None
    ) = None
    metadata: dict[Text, Text] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> UtteranceBody:
        if not self.text.strip():
            raise ValueError("text must not be blank")
        if self.started_at.tzinfo is None:
            raise ValueError("started_at needs a time zone, e.g. 2026-05-01T09:00:00Z")
        if self.ended_at is not None and self.ended_at < self.started_at:
            raise ValueError("ended_at is before started_at")
        return self


class IngestBody(_Strict):
    utterances: Annotated[list[UtteranceBody], Field(min_length=1, max_length=MAX_BATCH)]


class IngestResponse(BaseModel):
    accepted: int
    seq: int


class ConversationBody(_Strict):
    user_id: Id | None = None
    agent_id: Id | None = None
    started_at: Time | None = None
    metadata: dict[Text, Text] = Field(default_factory=dict)


class SearchFilters(_Strict):
    user_id: Id | None = None
    conversation_id: Id | list[Id] | None = None
    speaker: Text | list[Text] | None = None
    role: Role | list[Role] | None = None
    since: datetime | None = None
    until: datetime | None = None

    @model_validator(mode="after")
    def _check(self) -> SearchFilters:
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"{name} needs a time zone, e.g. 2026-05-01T00:00:00Z")
        if self.since is not None and self.until is not None and self.since > self.until:
            raise ValueError("since is later than until")
        return self


class SearchBody(_Strict):
    query: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
    k: int = Field(default=10, ge=1, le=100)
    mode: Literal["hybrid", "lexical", "dense"] = "hybrid"
    filters: SearchFilters = Field(default_factory=SearchFilters)
    budget_ms: float = Field(default=50.0, ge=MIN_BUDGET_MS, le=10_000)
    min_seq: int | None = Field(default=None, ge=0)
    #: when the query is asked, for "yesterday", "last week", "in May" (with a time zone: the
    #: user's local day); default: the server's clock, in UTC
    reference_time: datetime | None = None

    @model_validator(mode="after")
    def _check_reference_time(self) -> SearchBody:
        if self.reference_time is not None and self.reference_time.tzinfo is None:
            raise ValueError("reference_time needs a time zone, e.g. 2026-05-13T09:00:00-07:00")
        return self


class Turn(BaseModel):
    utterance_id: str
    conversation_id: str
    speaker: str
    role: Role
    text: str
    started_at: datetime
    turn: int


class TranscriptTurn(Turn):
    ended_at: datetime | None
    source: Source
    asr_confidence: float | None


class SearchHit(Turn):
    score: float
    user_id: str | None
    context: list[Turn]


class SearchResponse(BaseModel):
    hits: list[SearchHit]
    timings_ms: dict[str, float]
    degraded: list[str]
    index_seq: int


class ConversationResponse(BaseModel):
    id: str
    user_id: str | None
    agent_id: str | None
    started_at: datetime | None
    metadata: dict[str, str]
    turns: list[TranscriptTurn]


class DeleteResponse(BaseModel):
    seq: int
