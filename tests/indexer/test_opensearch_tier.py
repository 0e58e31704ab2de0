"""The tier contract on a real OpenSearch node, and what only a node can show.

Runs only when ``OPENSEARCH_URL`` points at a node with the k-NN and neural-search plugins
(``OPENSEARCH_VERIFY_CERTS=0`` for a self-signed development node): no package ships an
OpenSearch server, so CI does not run it. Each test gets indexes of its own, deleted after.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from indexer.errors import IndexUnavailable
from indexer.models import Filters
from indexer.opensearch_tier import OpenSearchTier
from indexer.tier import IndexTier
from tests.indexer.tier_contract import CONVERSATION, DIM, Feed, TierContract, TierFactory, vec

pytestmark = [
    pytest.mark.skipif(
        not os.environ.get("OPENSEARCH_URL"),
        reason="no OpenSearch node: set OPENSEARCH_URL to run the tier contract suite against "
        "one; CI does not",
    ),
    # OPENSEARCH_VERIFY_CERTS=0: urllib3 warns on every request to the self-signed node
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
]

MakeTier = Callable[..., OpenSearchTier]


@pytest.fixture(scope="module")
def client() -> Iterator[object]:
    from opensearchpy import OpenSearch

    verify = os.environ.get("OPENSEARCH_VERIFY_CERTS", "1") != "0"
    node = OpenSearch(
        hosts=[os.environ["OPENSEARCH_URL"]],
        timeout=30,
        verify_certs=verify,
        ssl_show_warn=verify,
    )
    yield node
    node.close()


@pytest.fixture(scope="module")
def cursor_index(client: object) -> Iterator[str]:
    name = f"convmem-test-cursors-{uuid.uuid4().hex[:8]}"
    yield name
    client.indices.delete(index=name, params={"ignore_unavailable": "true"})  # type: ignore[attr-defined]


@pytest.fixture
def make_tier(client: object, cursor_index: str) -> Iterator[MakeTier]:
    """Fresh tiers over fresh indexes (deleted after the test)."""
    made: list[str] = []

    def make(dim: int = DIM, *, index: str | None = None, **options: object) -> OpenSearchTier:
        name = index or f"convmem-test-{uuid.uuid4().hex[:12]}"
        tier = OpenSearchTier(
            client=client,  # type: ignore[arg-type]
            index=name,
            dim=dim,
            cursor_index=cursor_index,
            replicas=0,
            seq_ttl_s=0.0,
            **options,  # type: ignore[arg-type]
        )
        tier.ensure_index()
        made.append(name)
        return tier

    yield make
    for name in made:
        client.indices.delete(index=name, params={"ignore_unavailable": "true"})  # type: ignore[attr-defined]
        client.delete(index=cursor_index, id=name, params={"ignore": 404})  # type: ignore[attr-defined]


class TestOpenSearchTier(TierContract):
    @pytest.fixture
    def tier_factory(self, make_tier: MakeTier) -> TierFactory:
        def factory(dim: int) -> IndexTier:
            return make_tier(dim)

        return factory


def test_the_tier_is_an_index_tier(make_tier: MakeTier) -> None:
    assert isinstance(make_tier(), IndexTier)


def test_ensure_index_is_idempotent_and_refuses_another_dimension(make_tier: MakeTier) -> None:
    tier = make_tier(DIM)
    tier.ensure_index()  # again: nothing to do
    with pytest.raises(IndexUnavailable, match="vectors"):
        make_tier(DIM * 2, index=tier.index)  # the same index, for another model


def test_the_cursor_never_moves_back(make_tier: MakeTier) -> None:
    tier = make_tier()
    feed = Feed()
    early = [feed.put(1, "first", turn=1)]
    late = [feed.put(2, "second", turn=2)]
    assert tier.apply(early + late) == 2
    assert tier.apply(early) == 2  # a worker resuming from an older cursor
    assert tier.seq == 2


def test_a_second_tier_on_the_same_index_reads_the_writers_cursor(make_tier: MakeTier) -> None:
    writer = make_tier()
    feed = Feed()
    writer.apply([feed.put(uid, text, turn=uid, speaker=who) for uid, who, text in CONVERSATION])
    reader = make_tier(index=writer.index)  # a replica reading the same index
    assert reader.seq == writer.seq == feed.seq
    assert reader.records([3]) == writer.records([3])


def test_hybrid_search_fuses_in_the_cluster(client: object, make_tier: MakeTier) -> None:
    tier = make_tier()
    feed = Feed()
    tier.apply([feed.put(uid, text, turn=uid, speaker=who) for uid, who, text in CONVERSATION])
    pipeline = f"{tier.index}-hybrid"
    tier.ensure_pipeline(pipeline, (0.5, 0.5))
    try:
        hits = tier.search_hybrid(
            "dog beach", vec(4), 5, filters=Filters(tenant="t1"), timeout_s=5, pipeline=pipeline
        )
        assert int(hits.ids[0]) == 4
        assert np.all(np.diff(hits.scores) <= 0)
        other = tier.search_hybrid(
            "dog beach", vec(4), 5, filters=Filters(tenant="t2"), timeout_s=5, pipeline=pipeline
        )
        assert len(other) == 0
    finally:
        client.search_pipeline.delete(id=pipeline, params={"ignore": 404})  # type: ignore[attr-defined]
