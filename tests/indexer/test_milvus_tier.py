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


def test_a_collection_of_an_older_schema_is_rebuilt_by_the_worker_only(
    milvus_client: object,
) -> None:
    """A collection from an older convmem (here: no ``ct`` turn key) cannot serve this one:
    a replica refuses it with a clear error, the feed worker recreates it empty (the feed then
    rebuilds it from ``seq`` 0)."""
    from pymilvus import DataType, MilvusClient

    from indexer.errors import IndexUnavailable

    client: MilvusClient = milvus_client
    name = "stale_schema"
    tier = MilvusTier(client, collection=name, dim=4)
    tier.drop()
    old = MilvusClient.create_schema(auto_id=False)
    old.add_field("uid", DataType.INT64, is_primary=True)
    old.add_field("dense", DataType.FLOAT_VECTOR, dim=4)
    ip = client.prepare_index_params()
    ip.add_index("dense", index_type="FLAT", metric_type="IP")
    client.create_collection(name, schema=old, index_params=ip)
    try:
        with pytest.raises(IndexUnavailable, match=r"older schema \(no .*ct"):
            MilvusTier.open(client, collection=name, dim=4)
        fresh = MilvusTier.open(client, collection=name, dim=4, recreate_stale=True)
        assert fresh.missing_fields() == [] and len(fresh) == 0 and fresh.seq == 0
    finally:
        tier.drop()


def test_a_call_past_its_deadline_is_an_index_timeout_not_a_grpc_error(
    milvus_client: object,
) -> None:
    """pymilvus lets gRPC's DEADLINE_EXCEEDED out of a search unwrapped: the tier raises
    IndexTimeout (an IndexUnavailable: the searcher degrades that stage), not a gRPC error."""
    import numpy as np

    from indexer.errors import IndexTimeout
    from indexer.models import Filters

    tier = MilvusTier.open(milvus_client, collection="deadline_check", dim=4)
    try:
        for _ in range(3):  # a call may beat a microsecond deadline on an idle server
            try:
                tier.search_dense(
                    np.ones(4, np.float32), 5, filters=Filters(tenant="t"), timeout_s=1e-6
                )
                tier.search_lexical("hello", 5, filters=Filters(tenant="t"), timeout_s=1e-6)
            except IndexTimeout as exc:
                assert "timed out" in str(exc)
                break
        else:
            pytest.fail("no call ran past a 1 µs deadline")
    finally:
        tier.drop()
