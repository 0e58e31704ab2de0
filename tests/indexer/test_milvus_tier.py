"""The tier contract on a real Milvus server (the pinned milvus-lite wheel's binary)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from indexer.milvus_tier import MilvusTier
from indexer.tier import IndexTier
from tests.indexer.tier_contract import TierContract, TierFactory


@pytest.fixture(scope="module")
def milvus_client(milvus_uri: str) -> Iterator[object]:
    from indexer.milvus_tier import connect

    client = connect(milvus_uri)
    yield client
    client.close()


@pytest.fixture(scope="module")
def contract_collections(milvus_client: object) -> Iterator[dict[int, str]]:
    """One collection per dimension for the whole module, emptied before each test: creating
    a collection takes about 4 s here, emptying one a few milliseconds."""
    made: dict[int, str] = {}
    yield made
    for dim, name in made.items():
        MilvusTier(milvus_client, collection=name, dim=dim).drop()


class TestMilvusTier(TierContract):
    @pytest.fixture
    def tier_factory(
        self, milvus_client: object, contract_collections: dict[int, str]
    ) -> TierFactory:
        def make(dim: int) -> IndexTier:
            name = contract_collections.get(dim)
            if name is None:
                name = contract_collections[dim] = f"contract_{dim}"
                MilvusTier.open(milvus_client, collection=name, dim=dim).drop()
                MilvusTier.open(milvus_client, collection=name, dim=dim)
            tier = MilvusTier(milvus_client, collection=name, dim=dim)
            tier.clear()
            return tier

        return make
