"""`IndexTier`: the read side of the index, at the level of a whole shard.

Everything a search needs after the query is embedded goes through this protocol: scoped
BM25 and dense retrieval, the display records of hits, their neighbouring turns, the speakers
of a scope and whether a turn is a question. The change-feed worker feeds it (``apply``) in
``seq`` order, and ``seq`` says how far it has got.

Implementations:

- ``indexer.shard.IndexShard``: in process (tantivy + FAISS + records in memory); every
  replica holds its own copy and applies the feed itself.
- ``indexer.milvus_tier.MilvusTier``: a Milvus collection. A replica holds no corpus; one
  feed worker writes, any number of replicas read, and turn order and speakers are asked of
  Milvus rather than held in memory.
- ``indexer.opensearch_tier.OpenSearchTier``: an OpenSearch index, the same way.

``tests/indexer/tier_contract.py`` is one suite every implementation passes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from indexer.models import PLAIN_BM25, Change, Filters, LexicalOptions
from indexer.records import DocRecord
from ranking.hits import Hits


@dataclass(frozen=True, slots=True)
class HybridFusion:
    """How a tier that fuses server-side (``ServerFusion``) combines its runs."""

    kind: Literal["rrf", "weighted"]
    rrf_k: int = 60
    #: weighted: the turn key's BM25, the window key's BM25 and dense (a weight of 0 leaves
    #: that run out)
    weights: tuple[float, float, float] = (0.3, 0.3, 0.4)


@runtime_checkable
class ServerFusion(Protocol):
    """A tier that runs BM25 and dense in one request and fuses them itself (Milvus's
    ``hybrid_search``). The searcher uses it with ``fusion`` = ``server-rrf`` or
    ``server-weighted``; the ranking stages after fusion run on its hits as on any."""

    def search_fused(
        self,
        query: str,
        vector: npt.NDArray[np.float32],
        k: int,
        *,
        filters: Filters,
        dense_filters: Filters,
        timeout_s: float,
        options: LexicalOptions,
        fusion: HybridFusion,
    ) -> Hits:
        """The best ``k`` of BM25 over ``filters`` and dense over ``dense_filters``, fused."""
        ...


@runtime_checkable
class IndexTier(Protocol):
    """A searchable copy of the store, fed by the change feed. Thread-safe for reads."""

    #: every read is a round trip to another process (a remote engine): the searcher then
    #: overlaps its retrievals rather than running them one after another
    remote: bool

    @property
    def seq(self) -> int:
        """The highest change-feed ``seq`` applied (and visible to searches)."""
        ...

    def apply(self, changes: Sequence[Change]) -> int:
        """Apply changes (in ``seq`` order); return the ``seq`` now covered.

        Idempotent: applying a change again (a worker resuming from an older cursor) leaves
        the tier as it was. A delete of an unknown uid is a no-op.
        """
        ...

    def search_lexical(
        self,
        query: str,
        k: int,
        *,
        filters: Filters,
        timeout_s: float,
        options: LexicalOptions = PLAIN_BM25,
    ) -> Hits:
        """BM25 over the live utterances ``filters`` admits, best first (at most ``k``)."""
        ...

    def search_dense(
        self, vector: npt.NDArray[np.float32], k: int, *, filters: Filters, timeout_s: float
    ) -> Hits:
        """Inner product with an L2-normalised ``vector``, within ``filters``, best first."""
        ...

    def speakers(self, tenant: str, user_id: str | None = None) -> list[str]:
        """The speakers of the live utterances of ``user_id`` (None: the tenant), sorted."""
        ...

    def questions(self, uids: Iterable[int]) -> list[bool]:
        """Whether each utterance is a question (``ranking.is_question``); False if gone."""
        ...

    def records(self, uids: Iterable[int]) -> list[DocRecord | None]:
        """The record of each uid, None where it is not live (deleted, or never seen)."""
        ...

    def context_many(
        self, uids: Sequence[int], *, before: int, after: int
    ) -> dict[int, list[DocRecord]]:
        """For each live uid, the turns around it in its conversation (excluding it), in
        order: up to ``before`` earlier and ``after`` later live turns. One round trip on a
        remote tier."""
        ...

    def live_vectors(self, hits: Hits) -> tuple[Hits, npt.NDArray[np.float32]]:
        """The hits still live, in order, and their vectors (rows aligned)."""
        ...

    def __len__(self) -> int:
        """Live utterances held (a count query on a remote tier: not for the search path)."""
        ...
