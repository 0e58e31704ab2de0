"""`Services`: what a running app holds (built by the entry point, owned by the lifespan)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from indexer.ingest import Ingestor
from indexer.protocols import CrossEncoder, Embedder, Store
from indexer.tailer import ChangeFeedTailer
from indexer.tier import IndexTier
from query_service.searcher import Searcher


@dataclass
class Services:
    store: Store
    embedder: Embedder
    shard: IndexTier  # the index tier: in process, or a remote engine's client
    tailer: ChangeFeedTailer
    ingestor: Ingestor
    searcher: Searcher
    closers: list[Callable[[], None]] = field(default_factory=list)
    cross_encoder: CrossEncoder | None = None  # the searcher's reranker, if configured

    def close(self) -> None:
        """Stop the tailer (which writes a last snapshot), then release resources, newest first."""
        self.tailer.stop()
        for close in reversed(self.closers):
            close()
