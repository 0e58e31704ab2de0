"""The tier contract on a real Milvus server (the pinned milvus-lite wheel's binary)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt
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
    """Rows read as the default does on FLAT (an exact filtered search) and as on an ANN
    index (a query): the contract holds for both read paths."""

    @pytest.fixture(params=[True, False], ids=["search-reads", "query-reads"])
    def tier_factory(
        self,
        request: pytest.FixtureRequest,
        milvus_client: object,
        contract_collections: dict[int, str],
    ) -> TierFactory:
        def make(dim: int) -> IndexTier:
            name = contract_collections.get(dim)
            if name is None:
                name = contract_collections[dim] = f"contract_{dim}"
                MilvusTier.open(milvus_client, collection=name, dim=dim).drop()
                MilvusTier.open(milvus_client, collection=name, dim=dim)
            tier = MilvusTier(milvus_client, collection=name, dim=dim, read_by_search=request.param)
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


@pytest.fixture
def fused_tier(milvus_client: object) -> Iterator[MilvusTier]:
    from tests.indexer.tier_contract import DIM

    tier = MilvusTier.open(milvus_client, collection="fused_check", dim=DIM)
    tier.clear()
    yield tier
    tier.drop()


def test_milvus_fuses_bm25_and_dense_in_one_request(fused_tier: MilvusTier) -> None:
    """``search_fused`` (Milvus ``hybrid_search``): each run's hits are in the fused list,
    a run weighted 0 drops out, and the filters hold in every sub-request."""
    from indexer.models import Filters, LexicalOptions
    from indexer.tier import HybridFusion
    from tests.indexer.tier_contract import CONVERSATION, Feed, vec

    feed = Feed()
    fused_tier.apply(
        [feed.put(uid, text, turn=uid, speaker=who) for uid, who, text in CONVERSATION]
        + [feed.put(1000 + uid, text, turn=uid, tenant="t2") for uid, _, text in CONVERSATION]
    )
    f = Filters(tenant="t1")
    opts = LexicalOptions(drop_stopwords=True, speaker_weight=0.0)

    def fused(kind: str, weights: tuple[float, float, float]) -> list[int]:
        fusion = HybridFusion(kind=kind, weights=weights)  # type: ignore[arg-type]
        hits = fused_tier.search_fused(
            "peanut allergy",
            vec(4),
            5,
            filters=f,
            dense_filters=f,
            timeout_s=5,
            options=opts,
            fusion=fusion,
        )
        return [int(u) for u in hits.ids]

    both = fused("rrf", (1, 1, 1))
    assert {2, 4} <= set(both) and all(u < 1000 for u in both)  # BM25's 2, dense's 4
    assert fused("weighted", (1.0, 0.0, 0.0))[0] == 2
    assert fused("weighted", (0.0, 0.0, 1.0))[0] == 4
    scoped = fused_tier.search_fused(
        "peanut allergy",
        vec(4),
        5,
        filters=f,
        dense_filters=Filters(tenant="t1", speakers=("Maya",)),
        timeout_s=5,
        options=opts,
        fusion=HybridFusion(kind="weighted", weights=(0.0, 0.0, 1.0)),
    )
    assert 4 not in {int(u) for u in scoped.ids}  # turn 4 is Sam's: the dense filter holds


def test_the_searcher_fuses_on_milvus_when_asked(fused_tier: MilvusTier) -> None:
    """``fusion = server-rrf``: one request fuses on Milvus, and the stages after fusion
    (neighbours, context) run on its hits; the in-process tier, which cannot, fuses here."""
    from indexer.models import Filters
    from query_service.deadline import Deadline
    from query_service.searcher import Searcher, SearchParams
    from tests.indexer.tier_contract import CONVERSATION, DIM, Feed, vec

    class OneVector:
        dim = DIM
        model_id = "fixed"

        def embed_query(self, text: str) -> npt.NDArray[np.float32]:
            return vec(4)

        def embed_batch(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
            return np.stack([vec(4) for _ in texts])

    feed = Feed()
    fused_tier.apply(
        [feed.put(uid, text, turn=uid, speaker=who) for uid, who, text in CONVERSATION]
    )
    searcher = Searcher(
        shard=fused_tier, embedder=OneVector(), params=SearchParams(fusion="server-rrf")
    )
    try:
        r = searcher.search(
            "peanut allergy",
            k=3,
            mode="hybrid",
            filters=Filters(tenant="t1"),
            deadline=Deadline.after_ms(5000),
        )
    finally:
        searcher.close()
    assert "hybrid" in r.timings_ms and "lexical" not in r.timings_ms
    assert "dense" not in r.timings_ms and r.degraded == []
    uids = [h.record.uid for h in r.hits]
    assert 2 in uids and len(uids) == 3
    assert all(h.context for h in r.hits)  # hydrated with the turns around each


def test_reads_by_search_only_on_an_exact_index(milvus_client: object) -> None:
    """A filtered ANN search can miss rows the filter admits, so reading by search is refused
    with IVF_FLAT or HNSW, in the settings and in the tier; the default follows the index."""
    from pydantic import ValidationError

    from convmem.settings import MilvusSettings

    with pytest.raises(ValidationError, match="read_by_search needs dense_index FLAT"):
        MilvusSettings(dense_index="HNSW", read_by_search=True)
    assert MilvusSettings(dense_index="HNSW").read_by_search is None
    with pytest.raises(ValueError, match="FLAT"):
        MilvusTier(
            milvus_client, collection="x", dim=4, dense_index="IVF_FLAT", read_by_search=True
        )
    assert MilvusTier(milvus_client, collection="x", dim=4).read_by_search
    assert not MilvusTier(milvus_client, collection="x", dim=4, dense_index="HNSW").read_by_search


def test_a_replica_follows_the_cursor_without_a_search_waiting_for_it(
    milvus_client: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replica's ``seq`` answers from the last read while a background read refreshes it,
    so a busy replica sees the worker's new cursor a round trip later; after half a second
    idle it reads the cursor before answering. It never goes back."""
    import time
    from datetime import UTC, datetime

    from indexer import milvus_tier
    from tests.indexer.changes import utterance_change

    name = "cursor_follow"
    worker = MilvusTier.open(milvus_client, collection=name, dim=4)
    try:
        worker.clear()
        replica = MilvusTier(milvus_client, collection=name, dim=4)
        assert replica.seq == 0  # first look: read before answering
        at = datetime(2026, 1, 1, tzinfo=UTC)
        vec = np.array([1, 0, 0, 0], dtype=np.float32)
        monkeypatch.setattr(milvus_tier, "SEQ_WAIT_S", 3600.0)  # however long the apply takes
        worker.apply([utterance_change(7, 1, "hello there", turn=0, started_at=at, embedding=vec)])
        time.sleep(milvus_tier.SEQ_TTL_S * 2)  # stale, not idle
        assert replica.seq == 0  # answered from the last read; a read has started
        deadline = time.monotonic() + 5
        while replica.seq != 7:
            assert time.monotonic() < deadline, "the background read never landed"
            time.sleep(0.01)
        monkeypatch.setattr(milvus_tier, "SEQ_WAIT_S", 0.2)
        worker.apply([utterance_change(9, 2, "and again", turn=1, started_at=at, embedding=vec)])
        time.sleep(0.3)  # idle: read before answering
        assert replica.seq == 9
    finally:
        worker.drop()
