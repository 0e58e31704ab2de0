"""The tier contract on the in-process tier (tantivy + FAISS + records in memory)."""

from __future__ import annotations

import pytest

from indexer.bm25_index import TantivyBM25Index
from indexer.faiss_index import FaissVectorIndex
from indexer.shard import IndexShard
from indexer.tier import IndexTier
from tests.indexer.tier_contract import TierContract, TierFactory


class TestInProcessTier(TierContract):
    @pytest.fixture
    def tier_factory(self) -> TierFactory:
        def make(dim: int) -> IndexTier:
            return IndexShard(
                lexical=TantivyBM25Index(tokenizer="en_stem"), vector=FaissVectorIndex(dim=dim)
            )

        return make


def test_the_in_process_shard_is_an_index_tier() -> None:
    shard = IndexShard(lexical=TantivyBM25Index(), vector=FaissVectorIndex(dim=4))
    assert isinstance(shard, IndexTier)
