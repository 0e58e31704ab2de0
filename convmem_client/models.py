"""The values the clients send and return: frozen dataclasses, the same over REST and gRPC.

``Utterance`` is what ``ingest`` sends; any object with the same attributes will do (an
``UtteranceLike``, such as the server's own ``indexer.models.UtteranceIn``), and so will a
mapping in the REST API's JSON shape. Optional values the wire leaves empty are ``None``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

Mode = Literal["hybrid", "lexical", "dense"]
ROLES = ("user", "agent", "other")
SOURCES = ("text", "asr")


class UtteranceLike(Protocol):
    """What ``ingest`` reads from an utterance (``role`` in ROLES, ``source`` in SOURCES)."""

    @property
    def id(self) -> str: ...
    @property
    def conversation_id(self) -> str: ...
    @property
    def speaker(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def started_at(self) -> datetime: ...
    @property
    def ended_at(self) -> datetime | None: ...
    @property
    def user_id(self) -> str | None: ...
    @property
    def agent_id(self) -> str | None: ...
    @property
    def source(self) -> str: ...
    @property
    def asr_confidence(self) -> float | None: ...
    @property
    def metadata(self) -> Mapping[str, str]: ...


#: one utterance for ``ingest``: an ``Utterance`` (or alike), or the REST API's JSON as a mapping
UtteranceInput = UtteranceLike | Mapping[str, object]


@dataclass(frozen=True, slots=True)
class Utterance:
    """One utterance to store. ``id`` is the caller's: storing it again changes nothing."""

    id: str
    conversation_id: str
    speaker: str
    role: str
    text: str
    started_at: datetime
    ended_at: datetime | None = None
    user_id: str | None = None
    agent_id: str | None = None
    source: str = "text"
    asr_confidence: float | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Turn:
    utterance_id: str
    conversation_id: str
    speaker: str
    role: str
    text: str
    started_at: datetime
    #: the turn's number in its conversation (0-based)
    turn: int


@dataclass(frozen=True, slots=True)
class Hit(Turn):
    """A turn that matched, with its score, its owner and the turns around it."""

    score: float
    user_id: str | None
    context: tuple[Turn, ...]


@dataclass(frozen=True, slots=True)
class SearchResult:
    hits: tuple[Hit, ...]
    timings_ms: Mapping[str, float]
    #: the retrievers or stages that ran out of time or were skipped (``stale_index``, ...)
    degraded: tuple[str, ...]
    #: the change-feed seq the index had reached
    index_seq: int


@dataclass(frozen=True, slots=True)
class IngestResult:
    accepted: int
    #: the change-feed seq that covers the batch: pass it as ``min_seq`` to see it in search
    seq: int


@dataclass(frozen=True, slots=True)
class WriteResult:
    seq: int


@dataclass(frozen=True, slots=True)
class TranscriptTurn(Turn):
    ended_at: datetime | None
    source: str
    asr_confidence: float | None


@dataclass(frozen=True, slots=True)
class Transcript:
    id: str
    user_id: str | None
    agent_id: str | None
    started_at: datetime | None
    metadata: Mapping[str, str]
    turns: tuple[TranscriptTurn, ...]
