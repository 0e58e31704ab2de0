"""The Milvus tier of the scale benchmark: ``indexer.milvus_tier.MilvusTier`` on the real core.

The server is the pinned ``milvus-lite`` wheel's binary (``indexer.milvus_server``), started
in the work directory on a free port. The corpus reaches it as the service's change feed
would deliver it: ``Change`` objects in batches of the tailer's size through
``MilvusTier.apply``, user by user and conversation by conversation (a batch touches few users,
so the feed's per-batch speaker recount stays small). Searches go through the same
`Searcher` and `SearchParams` as the in-process tier.

milvus-lite has no HNSW: the dense index is FLAT (exact) unless ``dense_index`` says
IVF_FLAT. What this measures is the Milvus core and the tier's round trips on one node, not
Milvus Distributed.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from convmem.settings import Settings
from convmem.wiring import search_params
from eval.scale_corpus import Corpus, Scope
from eval.scale_memory import find_process, process_rss_bytes
from eval.scale_tier import BUDGET_MS, Answer, K, measure
from indexer.ingest import vector_id
from indexer.models import Change, Filters, Source, Utterance
from indexer.protocols import Embedder
from indexer.shard import DocRecord, IndexShard
from query_service.deadline import Deadline
from query_service.errors import DeadlineExceeded
from query_service.searcher import Searcher

if TYPE_CHECKING:
    from indexer.milvus_tier import MilvusTier

#: changes per ``apply`` (``ChangeFeedTailer``'s default batch)
FEED_BATCH = 2000
RAW_TIMEOUT_S = 10.0
COLLECTION = "scale_bench"


def changes(corpus: Corpus, model_id: str) -> Iterator[Change]:
    """The corpus as change-feed upserts, user by user, conversation by conversation."""
    made_by = vector_id(model_id, "text")
    order = np.lexsort((corpus.turn, corpus.conv, corpus.user))
    for seq, row in enumerate(order, 1):
        i = int(row)
        rec = corpus.record(i)
        fields = {f.name: getattr(rec, f.name) for f in dataclasses.fields(rec)}
        u = Utterance(**fields, ended_at=None, source=Source.TEXT, asr_confidence=None, seq=seq)
        yield Change(seq, rec.uid, False, u, corpus.vectors[i], made_by)


class _SearcherView:
    """The tier as `Searcher` reads a shard: everything is the tier's, and a ``context`` call
    (the searcher asking for one hit's neighbours) is one ``context_many`` round trip, counted
    in ``context_calls``: a searcher that batches them through ``context_many`` leaves it 0."""

    def __init__(self, tier: MilvusTier) -> None:
        self._tier = tier
        self.context_calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tier, name)

    def context(self, uid: int, *, before: int, after: int) -> list[DocRecord]:
        self.context_calls += 1
        return self._tier.context_many([uid], before=before, after=after).get(int(uid), [])


class MilvusScaleTier:
    """`ScaleTier` over a `MilvusTier` and the served `Searcher`."""

    name = "milvus"

    def __init__(self, *, tier: MilvusTier, embedder: Embedder, settings: Settings) -> None:
        self.tier = tier
        self._model_id = embedder.model_id
        self.failed = {"dense": 0, "lexical": 0}
        self.view = _SearcherView(tier)
        self.searcher = Searcher(
            shard=cast(IndexShard, self.view),  # it reads only what IndexTier offers
            embedder=embedder,
            params=search_params(settings),
        )

    def build(self, corpus: Corpus) -> dict[str, Any]:
        t0 = time.perf_counter()
        batch: list[Change] = []
        with tqdm(total=len(corpus), desc="milvus apply", unit="utt", file=sys.stderr) as bar:
            for change in changes(corpus, self._model_id):
                batch.append(change)
                if len(batch) == FEED_BATCH:
                    self.tier.apply(batch)
                    bar.update(len(batch))
                    batch = []
            if batch:
                self.tier.apply(batch)
                bar.update(len(batch))
        apply_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        self.tier.client.flush(self.tier.collection)
        flush_s = time.perf_counter() - t0
        return {
            "apply_s": round(apply_s, 2),
            "apply_utt_per_s": round(len(corpus) / apply_s, 1),
            "flush_s": round(flush_s, 2),
            "build_s": round(apply_s + flush_s, 2),
            "feed_batch": FEED_BATCH,
            "count_after_build": self.tier.count(),
        }

    def hybrid(self, query: str, filters: Filters) -> Answer:
        try:
            res = self.searcher.search(
                query, k=K, mode="hybrid", filters=filters, deadline=Deadline.after_ms(BUDGET_MS)
            )
        except DeadlineExceeded:
            return Answer(ids=[], degraded=["504"])
        except _failures() as exc:  # a Milvus call failed: count it, go on measuring
            return Answer(ids=[], degraded=[f"failed: {type(exc).__name__}"])
        return Answer([h.record.uid for h in res.hits], res.degraded, res.timings_ms)

    def dense(self, vector: npt.NDArray[np.float32], filters: Filters) -> list[int]:
        try:
            hits = self.tier.search_dense(vector, K, filters=filters, timeout_s=RAW_TIMEOUT_S)
        except _failures():
            self.failed["dense"] += 1
            return []
        return [int(u) for u in hits.ids]

    def lexical(self, query: str, filters: Filters) -> list[int]:
        try:
            hits = self.tier.search_lexical(query, K, filters=filters, timeout_s=RAW_TIMEOUT_S)
        except _failures():
            self.failed["lexical"] += 1
            return []
        return [int(u) for u in hits.ids]

    def size(self) -> dict[str, Any]:
        return {"rows": self.tier.count(), "failed_raw_calls": dict(self.failed)}

    def close(self) -> None:
        self.searcher.close()


def _failures() -> tuple[type[BaseException], ...]:
    """What a failed Milvus call raises: pymilvus's error, or gRPC's when it leaks through
    (a deadline exceeded inside ``MilvusClient.search`` arrives as ``grpc.RpcError``)."""
    import grpc
    from pymilvus import MilvusException

    return (MilvusException, grpc.RpcError)


def _server_rss(port: int) -> int | None:
    """RSS of the milvus process serving ``port`` (found by its command line)."""
    pid = find_process(f"127.0.0.1:{port}")
    return None if pid is None else process_rss_bytes(pid)


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def run(
    *,
    corpus: Corpus,
    scopes: Sequence[Scope],
    queries: Sequence[str],
    vectors: npt.NDArray[np.float32],
    embedder: Embedder,
    work: Path,
    warmup: int,
) -> dict[str, Any]:
    """Start the embedded Milvus in ``work/milvus`` (removed after), feed, size, search."""
    from pymilvus import MilvusClient

    from eval.serve_process import free_port
    from indexer.milvus_server import EmbeddedMilvus
    from indexer.milvus_tier import MilvusTier

    data, port = work / "milvus", free_port()
    server = EmbeddedMilvus(data, port=port).start()
    client = MilvusClient(uri=server.uri, timeout=RAW_TIMEOUT_S)
    tier = MilvusTier.open(client, collection=COLLECTION, dim=corpus.vectors.shape[1])
    scale = MilvusScaleTier(tier=tier, embedder=embedder, settings=Settings())
    try:
        rss_empty = _server_rss(port)
        build = scale.build(corpus)
        build["server_rss_empty_bytes"] = rss_empty
        build["server_rss_after_build_bytes"] = _server_rss(port)
        build["data_dir_bytes"] = _dir_bytes(data)
        build["dense_index"] = "FLAT"
        search = measure(scale, scopes, queries, vectors, warmup=warmup)
        calls = scale.view.context_calls / (len(queries) * len(scopes))
        build["context_round_trips_per_search"] = round(calls, 1)
        size = scale.size() | {"server_rss_after_search_bytes": _server_rss(port)}
        return {"build": build, "size": size, "search": search}
    finally:
        scale.close()
        client.close()
        server.stop()
        shutil.rmtree(data, ignore_errors=True)
