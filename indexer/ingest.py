"""`Ingestor`: validate, embed (batched), and durably store utterances; report the ``seq``.

What is embedded is the utterance's *embedding view*: ``"text"`` (the default) embeds the
words alone; ``"speaker_text"`` embeds ``"{speaker}: {text}"``, so a question that names a
person lands nearer what that person said. On LoCoMo the speaker view lifts plain dense
retrieval but not the full hybrid pipeline on the tuning conversations, so it is off by
default (docs/EVAL.md). The view is part of the stored vectors: changing it on a store that
already holds data needs the data ingested again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from indexer.errors import InvalidInput
from indexer.models import UtteranceIn
from indexer.protocols import Embedder, Store

MAX_BATCH = 1000
MAX_TEXT_CHARS = 10_000

EmbedView = Literal["speaker_text", "text"]


def vector_id(model_id: str, view: EmbedView) -> str:
    """Names what stored vectors are (model and view), e.g. for index snapshots."""
    return f"{model_id}/{view}"


def embedding_input(utterance: UtteranceIn, view: EmbedView) -> str:
    """The string the embedder sees for ``utterance`` under ``view``."""
    return embedding_text(utterance.speaker, utterance.text, view)


def embedding_text(speaker: str, text: str, view: EmbedView) -> str:
    """The string the embedder sees for a turn of ``speaker`` saying ``text`` under ``view``."""
    return f"{speaker}: {text}" if view == "speaker_text" else text


@dataclass(frozen=True, slots=True)
class IngestResult:
    accepted: int
    seq: int


class Ingestor:
    def __init__(
        self,
        *,
        store: Store,
        embedder: Embedder,
        on_commit: Callable[[int], None] | None = None,
        view: EmbedView = "text",
    ) -> None:
        if view not in ("speaker_text", "text"):
            raise ValueError(f"unknown embedding view {view!r} (expected speaker_text or text)")
        self._store = store
        self._embedder = embedder
        self._on_commit = on_commit
        self._view: EmbedView = view

    def ingest(self, tenant: str, utterances: Sequence[UtteranceIn]) -> IngestResult:
        """Embed and upsert one batch; returns once it is durable in the store."""
        validate_batch(utterances)
        embeddings = self._embedder.embed_batch(
            [embedding_input(u, self._view) for u in utterances]
        )
        seq = self._store.upsert_utterances(
            tenant,
            utterances,
            embeddings,
            embedding_model=vector_id(self._embedder.model_id, self._view),
        )
        if self._on_commit is not None:
            self._on_commit(seq)
        return IngestResult(accepted=len(utterances), seq=seq)


def validate_batch(utterances: Sequence[UtteranceIn]) -> None:
    """Reject what the store must never hold. Raises InvalidInput naming the first offender."""
    if len(utterances) > MAX_BATCH:
        raise InvalidInput(f"a batch holds at most {MAX_BATCH} utterances, got {len(utterances)}")
    for i, u in enumerate(utterances):
        if not u.id.strip() or not u.conversation_id.strip():
            raise InvalidInput(f"utterance {i}: id and conversation_id must be non-empty")
        if not u.text.strip():
            raise InvalidInput(f"utterance {i} ({u.id!r}): text is empty")
        if len(u.text) > MAX_TEXT_CHARS:
            raise InvalidInput(
                f"utterance {i} ({u.id!r}): text has {len(u.text)} characters,"
                f" the limit is {MAX_TEXT_CHARS}"
            )
        if u.started_at.tzinfo is None:
            raise InvalidInput(f"utterance {i} ({u.id!r}): started_at needs a time zone")
        for name, t in (("started_at", u.started_at), ("ended_at", u.ended_at)):
            if t is not None and not _in_utc_range(t):
                # stored, it could not be read back: the change feed would stop at it
                raise InvalidInput(
                    f"utterance {i} ({u.id!r}): {name} is before year 1 or after 9999 in UTC"
                )


def _in_utc_range(t: datetime) -> bool:
    try:
        t.astimezone(UTC)
    except OverflowError:
        return False
    return True
