"""The OpenSearch tier with no node behind it: what CI can check of the adapter itself.

A real client (``opensearch-py``) pointed at a closed port: the tier is an ``IndexTier``, and
every kind of request to a cluster that is not there raises ``IndexUnavailable`` (the
driver's error chained), never a driver exception.
"""

from __future__ import annotations

import inspect
import socket
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from indexer.errors import IndexUnavailable
from indexer.models import Filters, LexicalOptions
from indexer.opensearch_tier import OpenSearchTier
from indexer.tier import IndexTier
from ranking.hits import Hits
from tests.indexer.tier_contract import Feed

pytest.importorskip("opensearchpy")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the block ends


@pytest.fixture
def tier() -> Iterator[OpenSearchTier]:
    from opensearchpy import OpenSearch

    client = OpenSearch(hosts=[f"http://127.0.0.1:{closed_port()}"], max_retries=0, timeout=2)
    yield OpenSearchTier(client=client, index="utterances", dim=4, seq_ttl_s=0.0)
    client.close()


def as_tier(tier: OpenSearchTier) -> IndexTier:
    return tier  # mypy checks that OpenSearchTier is an IndexTier


def test_the_tier_has_every_member_of_index_tier(tier: OpenSearchTier) -> None:
    # not isinstance(): on Python 3.11 it reads the ``seq`` property, a request
    members = [n for n in vars(IndexTier) if not n.startswith("_") or n == "__len__"]
    assert "seq" in members and "apply" in members
    for name in members:
        assert inspect.getattr_static(OpenSearchTier, name, None) is not None, name
    assert as_tier(tier) is tier and tier.index == "utterances"


def test_the_constructor_does_no_io_and_checks_its_arguments() -> None:
    from opensearchpy import OpenSearch

    client = OpenSearch(hosts=["http://127.0.0.1:1"])  # never contacted
    with pytest.raises(ValueError, match="dim"):
        OpenSearchTier(client=client, index="i", dim=0)
    with pytest.raises(ValueError, match="bulk_max_actions"):
        OpenSearchTier(client=client, index="i", dim=4, bulk_max_actions=0)


def test_an_unreachable_cluster_is_index_unavailable(tier: OpenSearchTier) -> None:
    f = Filters(tenant="t1")
    calls: list[Callable[[], object]] = [
        lambda: tier.seq,
        lambda: tier.apply([Feed().put(1, "hello", turn=0, vector=np.ones(4, np.float32))]),
        lambda: tier.search_lexical("hello", 5, filters=f, timeout_s=1),
        lambda: tier.search_lexical(
            "hello Maya", 5, filters=f, timeout_s=1, options=LexicalOptions(speaker_weight=1)
        ),
        lambda: tier.search_dense(np.ones(4, np.float32), 5, filters=f, timeout_s=1),
        lambda: tier.records([1]),
        lambda: tier.questions([1]),
        lambda: tier.speakers("t1"),
        lambda: tier.context_many([1], before=1, after=1),
        lambda: tier.live_vectors(Hits.from_lists([1], [1.0])),
        lambda: len(tier),
        tier.ensure_index,
        tier.clear,
        tier.identity,
        lambda: tier.set_identity("store|model"),
    ]
    for call in calls:
        with pytest.raises(IndexUnavailable) as caught:
            call()
        assert caught.value.__cause__ is not None  # the driver's error, chained


def test_what_needs_no_request_sends_none(tier: OpenSearchTier) -> None:
    f = Filters(tenant="t1")
    assert len(tier.search_lexical("hello", 0, filters=f, timeout_s=1)) == 0
    assert len(tier.search_lexical("?!", 5, filters=f, timeout_s=1)) == 0  # no words
    assert len(tier.search_lexical("hello", 5, filters=f, timeout_s=0)) == 0
    assert len(tier.search_dense(np.ones(4, np.float32), 5, filters=f, timeout_s=0)) == 0
    assert tier.records([]) == [] and tier.questions([]) == []
    live, vectors = tier.live_vectors(Hits.empty())
    assert len(live) == 0 and vectors.shape == (0, 4)
    with pytest.raises(ValueError, match="shape"):
        tier.search_dense(np.ones(3, np.float32), 5, filters=f, timeout_s=1)
    with pytest.raises(ValueError, match="non-negative"):
        tier.search_lexical("hello", -1, filters=f, timeout_s=1)
