"""The boundaries of the indexer: small protocols, implemented by one adapter module each.

Embedder      st_embedder.SentenceTransformerEmbedder, onnx_embedder.OnnxEmbedder
CrossEncoder  cross_encoder.LocalCrossEncoder
LexicalIndex  bm25_index.TantivyBM25Index (a PersistentLexicalIndex: a snapshot keeps its files)
VectorIndex   faiss_index.FaissVectorIndex (a BulkVectorIndex: restored from columns at once)
Store         pg_store.PgStore
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from indexer.models import (
    PLAIN_BM25,
    Change,
    Conversation,
    ConversationIn,
    Filters,
    IndexDoc,
    LexicalOptions,
    Utterance,
    UtteranceIn,
    VectorRows,
)
from ranking.hits import Hits


@runtime_checkable
class Embedder(Protocol):
    """Maps text to L2-normalised float32 vectors of a fixed dimension."""

    @property
    def dim(self) -> int: ...

    @property
    def model_id(self) -> str:
        """Identifies the weights; snapshots and stored vectors are tied to it."""
        ...

    def embed_batch(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Embed documents: shape (len(texts), dim), rows L2-normalised."""
        ...

    def embed_query(self, text: str) -> npt.NDArray[np.float32]:
        """Embed one query: shape (dim,), L2-normalised. May be cached."""
        ...


class CrossEncoder(Protocol):
    """Scores (query, text) pairs jointly: a reranker, slower and sharper than the embedder."""

    @property
    def model_id(self) -> str: ...

    def score(self, query: str, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """One relevance score per text (higher is more relevant), shape (len(texts),)."""
        ...


class LexicalIndex(Protocol):
    """BM25 over utterance text, with filter columns. Ids are ``IndexDoc.uid``."""

    def upsert(self, docs: Sequence[IndexDoc]) -> None:
        """Add or replace documents (by uid). Visible to ``search`` after ``refresh``."""
        ...

    def delete(self, uids: Sequence[int]) -> None: ...

    def refresh(self) -> None:
        """Make every upsert and delete so far visible to searches."""
        ...

    def search(
        self,
        query: str,
        k: int,
        *,
        filters: Filters,
        timeout_s: float,
        options: LexicalOptions = PLAIN_BM25,
    ) -> Hits:
        """Best first; ``options`` are the lexical ranking stages (see ``LexicalOptions``)."""
        ...

    def __len__(self) -> int:
        """Number of live (searchable) documents."""
        ...


@runtime_checkable
class PersistentLexicalIndex(LexicalIndex, Protocol):
    """A lexical index whose committed state is files that a snapshot can keep."""

    def save_files(self, dest: Path) -> None:
        """Link (or copy) the files of the last ``refresh`` into the new directory ``dest``."""
        ...

    def restore_files(self, src: Path) -> None:
        """Open what `save_files` wrote (this index must be empty); ValueError if it is not
        an index this one can take (another schema or analyzer)."""
        ...


class VectorIndex(Protocol):
    """Inner-product search over L2-normalised vectors, with filter columns."""

    def upsert(self, docs: Sequence[IndexDoc]) -> None: ...

    def delete(self, uids: Sequence[int]) -> None: ...

    def search(
        self, vector: npt.NDArray[np.float32], k: int, *, filters: Filters, timeout_s: float
    ) -> Hits: ...

    def vectors_for(self, uids: Sequence[int]) -> npt.NDArray[np.float32]:
        """The stored vectors of live ``uids``, one row each (for snapshots and reranking)."""
        ...

    def __len__(self) -> int: ...


@runtime_checkable
class BulkVectorIndex(VectorIndex, Protocol):
    """A vector index that fills itself from columns at once (a snapshot's restore)."""

    def load_rows(self, rows: VectorRows) -> None:
        """Load ``rows`` into this empty index (ValueError if it is not empty); it may keep
        views of ``rows.vectors`` rather than copies."""
        ...


class Store(Protocol):
    """The store of record (PostgreSQL). Every call is scoped to one tenant."""

    def upsert_utterances(
        self,
        tenant: str,
        utterances: Sequence[UtteranceIn],
        embeddings: npt.NDArray[np.float32],
        *,
        embedding_model: str | None = None,
    ) -> int:
        """Durably upsert (idempotent by ``(tenant, id)``); return the highest ``seq`` written.

        ``embedding_model`` names what made the vectors (``ingest.vector_id``)."""
        ...

    def put_conversation(self, tenant: str, conversation: ConversationIn) -> int: ...

    def get_conversation(self, tenant: str, conversation_id: str) -> Conversation: ...

    def transcript(self, tenant: str, conversation_id: str) -> list[Utterance]: ...

    def delete_conversation(self, tenant: str, conversation_id: str) -> int: ...

    def delete_utterance(self, tenant: str, utterance_id: str) -> int: ...

    def delete_user(self, tenant: str, user_id: str) -> int: ...

    def changes_since(self, seq: int, limit: int) -> list[Change]:
        """Changes with ``seq`` greater than the argument, in ``seq`` order. Never skips one."""
        ...

    def max_seq(self) -> int: ...

    def ping(self) -> bool:
        """Whether the store answers a trivial query now (within about a second); never raises."""
        ...


class VectorStore(Protocol):
    """The store's side of a change of embedder (``indexer.reembed``), tenant-wide."""

    def count_stale_embeddings(self, embedding_model: str) -> int: ...

    def stale_embeddings(
        self, embedding_model: str, *, after_uid: int, limit: int
    ) -> list[tuple[int, str, str]]: ...

    def write_embeddings(
        self,
        embedding_model: str,
        rows: Sequence[tuple[int, str]],
        embeddings: npt.NDArray[np.float32],
    ) -> int: ...
