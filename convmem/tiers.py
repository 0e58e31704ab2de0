"""The index tier from `Settings` (``CONVMEM_INDEX__TIER``): in process, Milvus or OpenSearch.

The seam for a new engine is ``indexer.tier.IndexTier``: implement it, pass
``tests/indexer/tier_contract.py``, and add a branch to ``build_tier``. Everything above it
(the tailer that feeds it, the searcher that reads it, the transports) is unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from convmem.settings import Settings
from indexer.bm25_index import TantivyBM25Index, remove_stale
from indexer.numpy_index import NumpyVectorIndex
from indexer.protocols import VectorIndex
from indexer.shard import IndexShard
from indexer.tier import IndexTier

_log = logging.getLogger(__name__)


def build_tier(settings: Settings, dim: int, closers: list[Callable[[], None]]) -> IndexTier:
    tier = settings.index.tier
    if tier == "milvus":
        return build_milvus_tier(settings, dim, closers)
    if tier == "opensearch":
        return build_opensearch_tier(settings, dim, closers)
    return build_shard(settings, dim)


def build_shard(settings: Settings, dim: int) -> IndexShard:
    ix = settings.index
    vector: VectorIndex
    if ix.vector_backend == "numpy":
        vector = NumpyVectorIndex(dim=dim)
    else:
        from indexer.faiss_index import DEFAULT_ANN_THRESHOLD, FaissVectorIndex

        vector = FaissVectorIndex(
            dim=dim,
            ann_threshold=(DEFAULT_ANN_THRESHOLD if ix.ann_threshold is None else ix.ann_threshold),
        )
    # beside the snapshot (data_dir/index), so that saving one hard-links the segment files
    lexical_dir = settings.data_dir / "lexical"
    remove_stale(lexical_dir)
    lexical = TantivyBM25Index(tokenizer=ix.tokenizer, work_dir=lexical_dir)
    return IndexShard(lexical=lexical, vector=vector)


def build_milvus_tier(settings: Settings, dim: int, closers: list[Callable[[], None]]) -> IndexTier:
    """The configured Milvus, or the bundled server started under ``data_dir/milvus``."""
    from indexer.milvus_server import EmbeddedMilvus
    from indexer.milvus_tier import MilvusTier, connect

    m = settings.milvus
    uri = m.uri
    if uri is None:
        port = m.port
        if port == 0:
            from eval.serve_process import free_port

            port = free_port()
        server = EmbeddedMilvus(settings.data_dir / "milvus", port=port).start()
        closers.append(server.stop)
        uri = server.uri
    token = m.token.get_secret_value() if m.token is not None else ""
    client = connect(uri, token=token, timeout_s=m.timeout_s)
    closers.append(client.close)
    partition_key = m.partition_key if m.partition_key is not None else m.uri is not None
    _log.info("index tier: Milvus at %s, collection %s", uri, m.collection)
    return MilvusTier.open(
        client,
        recreate_stale=settings.index.feed,
        collection=m.collection,
        dim=dim,
        partition_key=partition_key,
        dense_index=m.dense_index,
        nlist=m.nlist,
        nprobe=m.nprobe,
        consistency=m.consistency,
        timeout_s=m.timeout_s,
        read_by_search=m.read_by_search,
    )


def build_opensearch_tier(
    settings: Settings, dim: int, closers: list[Callable[[], None]]
) -> IndexTier:
    """The configured OpenSearch cluster (no node runs here: see docs/OPENSEARCH.md)."""
    from opensearchpy import OpenSearch

    from indexer.opensearch_tier import OpenSearchTier

    o = settings.opensearch
    assert o.url is not None  # the settings validator checks it
    auth = None
    if o.username is not None:
        auth = (o.username, o.password.get_secret_value() if o.password is not None else "")
    client = OpenSearch(
        hosts=[o.url], http_auth=auth, verify_certs=o.verify_certs, timeout=o.timeout_s
    )
    closers.append(client.close)
    _log.info("index tier: OpenSearch at %s, index %s", o.url, o.index)
    tier = OpenSearchTier(client=client, index=o.index, dim=dim, request_timeout_s=o.timeout_s)
    tier.ensure_index()
    return tier


def rebuild_if_foreign(tier: IndexTier, identity: str) -> None:
    """A remote tier built from another store or another model is emptied (the feed then
    rebuilds it from ``seq`` 0); the in-process one checks its snapshot instead."""
    from indexer.milvus_tier import MilvusTier
    from indexer.opensearch_tier import OpenSearchTier

    if not isinstance(tier, MilvusTier | OpenSearchTier):
        return
    found = tier.identity()
    if found is not None and found != identity:
        _log.warning("index tier was built from %s, not %s: rebuilding it", found, identity)
        tier.clear()
    if found != identity:
        tier.set_identity(identity)
