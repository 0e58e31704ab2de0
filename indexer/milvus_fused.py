"""One Milvus ``hybrid_search`` for the BM25 and dense runs of a search, fused by Milvus.

The requests are the runs the served searcher would send one by one (``MilvusTier``): BM25
over the turn's text, BM25 over the window key (the turn before and this one), and dense,
each with its filter; a query that names a speaker of the scope adds BM25 over that speaker's
turns (the speaker-routing bonus, as one more fused run rather than a score added). Milvus
fuses them with ``RRFRanker(k)`` or ``WeightedRanker`` (its own score normalisation, not the
searcher's min-max), so rankings differ from client-side fusion: see docs/SCALING.md for what
that does to LoCoMo.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from indexer.milvus_keys import filter_expr, named_expr
from indexer.milvus_schema import LIGHT_FIELDS, light
from indexer.models import Filters
from indexer.tier import HybridFusion
from ranking.hits import Hits

if TYPE_CHECKING:
    from pymilvus import AnnSearchRequest, MilvusClient


def requests(
    *,
    text: str,
    names: frozenset[str],
    vector: npt.NDArray[np.float32],
    k: int,
    filters: Filters,
    dense_filters: Filters,
    fusion: HybridFusion,
    dense_params: dict[str, Any],
) -> tuple[list[AnnSearchRequest], list[float]]:
    """The sub-requests and their weights (pure but for pymilvus's request type)."""
    from pymilvus import AnnSearchRequest

    bm25 = {"metric_type": "BM25"}
    expr = filter_expr(filters)
    w_turn, w_window, w_dense = fusion.weights
    reqs: list[AnnSearchRequest] = []
    weights: list[float] = []
    if text:
        runs = [("text_sparse", expr, w_turn), ("window_sparse", expr, w_window)]
        if names:
            runs.append(("text_sparse", named_expr(expr, names), w_turn))
        for field, where, weight in runs:
            if weight > 0 or fusion.kind == "rrf":
                reqs.append(AnnSearchRequest([text], field, bm25, k, expr=where))
                weights.append(weight)
    reqs.append(
        AnnSearchRequest(
            [np.asarray(vector, dtype=np.float32).tolist()],
            "dense",
            dense_params,
            k,
            expr=filter_expr(dense_filters),
        )
    )
    weights.append(w_dense)
    return reqs, weights


def search_fused(
    client: MilvusClient,
    collection: str,
    *,
    text: str,
    names: frozenset[str],
    vector: npt.NDArray[np.float32],
    k: int,
    filters: Filters,
    dense_filters: Filters,
    timeout_s: float,
    fusion: HybridFusion,
    dense_params: dict[str, Any],
    consistency: str,
) -> tuple[Hits, list[tuple[int, int, bool]]]:
    """The fused hits, and each hit's ``(uid, ct, is_question)`` for the read memo."""
    from pymilvus import RRFRanker, WeightedRanker

    reqs, weights = requests(
        text=text,
        names=names,
        vector=vector,
        k=k,
        filters=filters,
        dense_filters=dense_filters,
        fusion=fusion,
        dense_params=dense_params,
    )
    ranker = RRFRanker(fusion.rrf_k) if fusion.kind == "rrf" else WeightedRanker(*weights)
    res = client.hybrid_search(
        collection,
        reqs,
        ranker,
        limit=k,
        output_fields=LIGHT_FIELDS,
        timeout=timeout_s,
        consistency_level=consistency,
    )
    found = res[0]
    ids = np.fromiter((int(h["id"]) for h in found), np.int64, len(found))
    scores = np.fromiter((float(h["distance"]) for h in found), np.float32, len(found))
    return Hits(ids, scores), [light(h) for h in found]
