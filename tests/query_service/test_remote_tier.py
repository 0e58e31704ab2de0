"""The served API on the Milvus tier: the REST tests of ``test_api`` against a real Milvus
server, plus what only a remote tier has (a replica that holds no corpus, a feed worker that
resumes from the cursor it stored, and forgetting a user in the engine itself)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import pytest
from fastapi.testclient import TestClient

from indexer.milvus_keys import quoted
from indexer.milvus_tier import MilvusTier
from tests.query_service import test_api
from tests.query_service.helpers import MAYA, TOM, batch
from tests.query_service.test_api import ids, ingest, search

AppClient = Callable[..., AbstractContextManager[TestClient]]


@pytest.fixture
def milvus_app(app_client: AppClient, milvus_uri: str, milvus_collection: str) -> AppClient:
    """``app_client`` with the index on Milvus (one collection per test)."""

    def make(**kw: Any) -> AbstractContextManager[TestClient]:
        index = {"tier": "milvus", **kw.pop("index", {})}
        return app_client(
            index=index,
            milvus={"uri": milvus_uri, "collection": milvus_collection, "partition_key": False},
            **kw,
        )

    return make


@pytest.fixture
def milvus_rows(milvus_uri: str, milvus_collection: str) -> Callable[[str], list[dict[str, Any]]]:
    """What Milvus itself holds for a tenant (read with a client of its own)."""
    from indexer.milvus_tier import connect

    def rows(tenant: str) -> list[dict[str, Any]]:
        client = connect(milvus_uri)
        try:
            return list(
                client.query(
                    milvus_collection,
                    filter=f"tenant_k == {quoted(tenant)}",
                    output_fields=["id", "user_id", "text"],
                    limit=16_384,
                    consistency_level="Strong",
                )
            )
        finally:
            client.close()

    return rows


@pytest.mark.parametrize(
    "name",
    [
        "test_ingest_then_search_each_mode",
        "test_context_holds_neighbouring_turns",
        "test_filters",
        "test_transcript_and_deletes",
        "test_restart_serves_same_results_without_reembedding",
        "test_tenants_never_see_each_other",
        "test_turns_before_the_owner_was_known_are_found_by_user",
    ],
)
def test_the_api_behaves_the_same_on_milvus(
    name: str, milvus_app: AppClient, real_embedder: object
) -> None:
    test = getattr(test_api, name)
    if "real_embedder" in test.__code__.co_varnames[: test.__code__.co_argcount]:
        test(milvus_app, real_embedder)
    else:
        test(milvus_app)


def test_forgetting_a_user_removes_them_from_milvus(
    milvus_app: AppClient, milvus_rows: Any
) -> None:
    with milvus_app() as client:
        ingest(client, batch("maya-1", "maya", MAYA))
        ingest(client, batch("tom-1", "tom", TOM))
        seq = ingest(client, batch("maya-2", "maya", MAYA[:2], day=3))
        search(client, "peanuts", seq)  # the tier has caught up
        held = milvus_rows("default")
        assert {r["user_id"] for r in held} == {"maya", "tom"}
        seq = client.delete("/v1/users/maya").json()["seq"]
        found = ids(search(client, "Lisbon peanuts Biscuit", seq, k=20))
        assert found and not any(i.startswith("maya") for i in found)
        left = milvus_rows("default")
        assert left and {r["user_id"] for r in left} == {"tom"}
        assert not any(r["text"] in {t for _, _, t in MAYA} for r in left)


def test_a_read_replica_holds_no_corpus_and_follows_the_worker(milvus_app: AppClient) -> None:
    """Two apps on one store and one Milvus: the worker feeds, the replica (feed off) reads."""
    with milvus_app() as worker, milvus_app(index={"feed": False}) as replica:
        services = replica.app.state.services  # type: ignore[attr-defined]
        assert services.tailer.lag_seq == 0 and isinstance(services.shard, MilvusTier)
        seq = ingest(worker, batch("maya-1", "maya", MAYA))
        found = search(replica, "allergic to peanuts", seq, k=3)
        assert found["index_seq"] >= seq and "stale_index" not in found["degraded"]
        assert ids(found)[0].startswith("maya-1")
        # a write through the replica is stored, fed by the worker, and read back by the replica
        seq = ingest(replica, batch("tom-1", "tom", TOM))
        assert ids(search(replica, "cello", seq, k=3))
