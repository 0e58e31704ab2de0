"""Domain types of the store of record and the indexes (frozen dataclasses, no I/O)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Literal

import numpy as np
import numpy.typing as npt


class Role(StrEnum):
    USER = "user"
    AGENT = "agent"
    OTHER = "other"


class Source(StrEnum):
    TEXT = "text"
    ASR = "asr"


@dataclass(frozen=True, slots=True)
class UtteranceIn:
    """An utterance as a client submits it (before it has a ``seq``)."""

    id: str
    conversation_id: str
    speaker: str
    role: Role
    text: str
    started_at: datetime
    ended_at: datetime | None = None
    user_id: str | None = None
    agent_id: str | None = None
    source: Source = Source.TEXT
    asr_confidence: float | None = None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ConversationIn:
    id: str
    user_id: str | None = None
    agent_id: str | None = None
    started_at: datetime | None = None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Conversation:
    tenant: str
    id: str
    user_id: str | None
    agent_id: str | None
    started_at: datetime | None
    metadata: dict[str, str]


@dataclass(frozen=True, slots=True)
class Utterance:
    """A stored utterance. ``uid`` is the internal int64 document id used by indexes."""

    uid: int
    tenant: str
    id: str
    conversation_id: str
    user_id: str | None
    turn: int
    speaker: str
    role: Role
    text: str
    started_at: datetime
    ended_at: datetime | None
    source: Source
    asr_confidence: float | None
    seq: int


@dataclass(frozen=True, slots=True)
class Change:
    """One entry of the change feed: an upsert (with its embedding) or a tombstone."""

    seq: int
    uid: int
    deleted: bool
    utterance: Utterance
    embedding: npt.NDArray[np.float32] | None
    #: what made ``embedding`` (``ingest.vector_id``: model and view); None if unknown
    embedding_model: str | None = None


@dataclass(frozen=True, slots=True)
class IndexDoc:
    """What an index needs of one utterance: its id, text, vector and filter columns."""

    uid: int
    tenant: str
    user_id: str | None
    conversation_id: str
    speaker: str
    role: Role
    started_at: float  # unix seconds
    text: str
    embedding: npt.NDArray[np.float32]
    #: the text of the turn before this one in its conversation ("" for the first turn): what
    #: this turn answers. The index shard fills it in; BM25 indexes it, with ``text``, as the
    #: window key (``LexicalOptions.key``).
    context: str = ""


@dataclass(frozen=True, slots=True)
class VectorRows:
    """Documents as columns, for a bulk load of a vector index (a snapshot's restore).

    Row ``i`` is ``uids[i]`` with vector ``vectors[i]``; each string column is a code into
    its list (``tenant[i]`` into ``tenants``, ...), ``role`` into ``roles``, and ``started``
    is unix seconds, as ``IndexDoc.started_at``.
    """

    uids: npt.NDArray[np.int64]
    vectors: npt.NDArray[np.float32]
    tenants: list[str]
    tenant: npt.NDArray[np.int32]
    users: list[str | None]
    user: npt.NDArray[np.int32]
    convs: list[str]
    conv: npt.NDArray[np.int32]
    speakers: list[str]
    speaker: npt.NDArray[np.int32]
    roles: tuple[Role, ...]
    role: npt.NDArray[np.int8]
    started: npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Filters:
    """Scope of a search. ``tenant`` is mandatory and always comes from the credential.

    Empty tuples and ``None`` mean "no restriction". ``since``/``until`` are unix seconds,
    inclusive bounds on ``started_at``.
    """

    tenant: str
    user_id: str | None = None
    conversation_ids: tuple[str, ...] = ()
    speakers: tuple[str, ...] = ()
    roles: tuple[Role, ...] = ()
    since: float | None = None
    until: float | None = None

    def matches(self, doc: IndexDoc) -> bool:
        """Reference predicate; indexes must return exactly the docs this accepts."""
        return self.admits(
            tenant=doc.tenant,
            user_id=doc.user_id,
            conversation_id=doc.conversation_id,
            speaker=doc.speaker,
            role=doc.role,
            started_at=doc.started_at,
        )

    def admits(
        self,
        *,
        tenant: str,
        user_id: str | None,
        conversation_id: str,
        speaker: str,
        role: Role,
        started_at: float,
    ) -> bool:
        """Whether an utterance with these fields is in scope (``started_at`` unix seconds)."""
        if tenant != self.tenant:
            return False
        if self.user_id is not None and user_id != self.user_id:
            return False
        if self.conversation_ids and conversation_id not in self.conversation_ids:
            return False
        if self.speakers and speaker not in self.speakers:
            return False
        if self.roles and role not in self.roles:
            return False
        if self.since is not None and started_at < self.since:
            return False
        return not (self.until is not None and started_at > self.until)


@dataclass(frozen=True, slots=True)
class LexicalOptions:
    """How a BM25 search reads its query (the lexical ranking stages; default: plain BM25).

    ``drop_stopwords``: leave English function words (``indexer.stopwords``) out of the query,
    unless nothing would remain. ``speaker_weight`` > 0: a query term that names a speaker
    within the search's filters matches the speaker's name, scaled by this weight, instead of
    the text. ``key`` is what is searched: ``"turn"``, the utterance's own text, or
    ``"window"``, the turn before it (``IndexDoc.context``) and the utterance together as one
    document, so a reply is also found by the words of the question it answers.
    """

    drop_stopwords: bool = False
    speaker_weight: float = 0.0
    key: Literal["turn", "window"] = "turn"

    def __post_init__(self) -> None:
        if not (self.speaker_weight >= 0 and math.isfinite(self.speaker_weight)):
            raise ValueError(
                f"speaker_weight must be a finite number >= 0, got {self.speaker_weight}"
            )
        if self.key not in ("turn", "window"):
            raise ValueError(f"key must be 'turn' or 'window', got {self.key!r}")


#: No lexical stage: plain BM25 over every query term.
PLAIN_BM25 = LexicalOptions()


def as_tuple(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """Normalise "one or a list" API values to a tuple."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)
