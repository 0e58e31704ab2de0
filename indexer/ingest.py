"""`Ingestor`: validate, embed (batched), and durably store utterances; report the ``seq``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from indexer.models import UtteranceIn
from indexer.protocols import Embedder, Store

MAX_BATCH = 1000
MAX_TEXT_CHARS = 10_000


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
    ) -> None:
        self._store = store
        self._embedder = embedder
        self._on_commit = on_commit

    def ingest(self, tenant: str, utterances: Sequence[UtteranceIn]) -> IngestResult:
        """Embed and upsert one batch; returns once it is durable in the store."""
        validate_batch(utterances)
        embeddings = self._embedder.embed_batch([u.text for u in utterances])
        seq = self._store.upsert_utterances(tenant, utterances, embeddings)
        if self._on_commit is not None:
            self._on_commit(seq)
        return IngestResult(accepted=len(utterances), seq=seq)


def validate_batch(utterances: Sequence[UtteranceIn]) -> None:
    """Reject what the store must never hold. Raises ValueError naming the first offender."""
    if len(utterances) > MAX_BATCH:
        raise ValueError(f"a batch holds at most {MAX_BATCH} utterances, got {len(utterances)}")
    for i, u in enumerate(utterances):
        if not u.id.strip() or not u.conversation_id.strip():
            raise ValueError(f"utterance {i}: id and conversation_id must be non-empty")
        if not u.text.strip():
            raise ValueError(f"utterance {i} ({u.id!r}): text is empty")
        if len(u.text) > MAX_TEXT_CHARS:
            raise ValueError(
                f"utterance {i} ({u.id!r}): text has {len(u.text)} characters,"
                f" the limit is {MAX_TEXT_CHARS}"
            )
        if u.started_at.tzinfo is None:
            raise ValueError(f"utterance {i} ({u.id!r}): started_at needs a time zone")
