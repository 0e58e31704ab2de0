"""Request bodies of the OpenSearch index tier's searches (pure: no client, no I/O).

Field names and the index are in ``indexer.opensearch_mapping``, lookups by uid, conversation
and tenant in ``indexer.opensearch_lookups``, bulk writes in ``indexer.opensearch_bulk``.

Every search names its tenant twice: as a ``term`` filter (always, whatever else the scope
says) and as the request's ``routing`` (`search_routing`), so it reads the tenant's shard.

BM25 (``lexical_query``) is Lucene's (k1 = 1.2, b = 0.75; idf = ln(1 + (N − n + 0.5) /
(n + 0.5))), a disjunction of one ``match`` clause per distinct query word, boosted by its
count, as ``indexer.bm25_index`` builds it; the filter is a non-scoring ``bool.filter``.
Lucene leaves BM25's constant factor (k1 + 1) out, and its ``N``, ``n`` and ``avgdl`` are
the shard's: scores differ from the in-process tier by a factor and by statistics, not in
how they are computed.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Collection, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from indexer import stopwords
from indexer.models import Filters, LexicalOptions
from indexer.opensearch_mapping import (
    CONVERSATION_ID,
    EMBEDDING,
    ROLE,
    SPEAKER,
    SPEAKER_TEXT,
    STARTED_AT,
    TENANT,
    TEXT,
    UID,
    USER_ID,
    WINDOW,
    Body,
    Space,
)

__all__ = [
    "MAX_PAGE",
    "MAX_QUERY_TERMS",
    "filter_clauses",
    "filter_query",
    "hybrid_search",
    "inner_product",
    "knn_query",
    "lexical_query",
    "named_words",
    "query_words",
    "ranked_search",
    "search_routing",
    "speaker_probe",
]

#: Distinct words kept from one query (the first ones); bounds the cost of hostile input.
MAX_QUERY_TERMS = 256
#: The most hits one search returns (the index's default ``max_result_window``).
MAX_PAGE = 10_000
#: The words of a query as ``convmem_text`` splits them: runs of letters and digits.
_WORD = re.compile(r"[^\W_]+")
_MATCH_NONE: Body = {"match_none": {}}
_BY_SCORE_THEN_UID: list[object] = [{"_score": "desc"}, {UID: "asc"}]


def search_routing(tenant: str) -> str | None:
    """The ``routing`` of a search scoped to ``tenant``: its shard; None: every shard.

    A search's ``routing`` is a comma-separated list, so a tenant whose name holds a comma
    cannot be named by it: that search reads every shard (the tenant filter still scopes it).
    """
    return None if "," in tenant else tenant


def filter_clauses(filters: Filters) -> list[Body]:
    """``filters`` as non-scoring clauses; the tenant is always the first.

    ``user_id`` None adds nothing (any user, and utterances with no user); ``since``/``until``
    are inclusive bounds on ``started_at``. As in ``Filters.admits``, a NaN bound excludes
    nothing, and so does an infinite bound on the open side; one on the closed side
    (``since`` = +inf, ``until`` = -inf) excludes everything.
    """
    clauses: list[Body] = [{"term": {TENANT: filters.tenant}}]
    if filters.user_id is not None:
        clauses.append({"term": {USER_ID: filters.user_id}})
    for name, values in (
        (CONVERSATION_ID, filters.conversation_ids),
        (SPEAKER, filters.speakers),
        (ROLE, tuple(str(role) for role in filters.roles)),
    ):
        if values:
            clauses.append({"terms": {name: list(values)}})
    bounds: Body = {}
    for op, value, never in (("gte", filters.since, math.inf), ("lte", filters.until, -math.inf)):
        if value is None or math.isnan(value) or value == -never:
            continue
        if value == never:
            return [*clauses, _MATCH_NONE]
        bounds[op] = value
    if bounds:
        clauses.append({"range": {STARTED_AT: bounds}})
    return clauses


def filter_query(filters: Filters) -> Body:
    return {"bool": {"filter": filter_clauses(filters)}}


def query_words(query: str, *, drop_stopwords: bool = False) -> list[tuple[str, int]]:
    """The distinct words of ``query`` (lowercase, first seen first) and their counts.

    ``drop_stopwords`` leaves out the English function words of ``indexer.stopwords``, unless
    nothing would remain. The split is the index analyser's (``convmem_text``), so each word
    is one indexed term once the server stems it.
    """
    counts = Counter(word.lower() for word in _WORD.findall(query))
    if drop_stopwords:
        content = Counter({w: c for w, c in counts.items() if w not in stopwords.ENGLISH})
        counts = content or counts
    return list(counts.items())[:MAX_QUERY_TERMS]


def speaker_probe(words: Sequence[str], filters: Filters) -> Body:
    """Which of ``words`` name a speaker within ``filters``: one bucket per word, by index.

    Scoped, not index-wide, so another tenant's speakers never change how this tenant's query
    is read. The answer's ``aggregations.names.buckets[str(i)].doc_count`` > 0 when word i does.
    """
    buckets = {str(i): {"match": {SPEAKER_TEXT: word}} for i, word in enumerate(words)}
    return {
        "size": 0,
        "track_total_hits": False,
        "query": filter_query(filters),
        "aggs": {"names": {"filters": {"filters": buckets}}},
    }


def named_words(words: Sequence[str], response: Mapping[str, object]) -> frozenset[str]:
    """The words a `speaker_probe` answer says name a speaker."""
    aggs = response.get("aggregations")
    names = aggs.get("names") if isinstance(aggs, Mapping) else None
    buckets = names.get("buckets") if isinstance(names, Mapping) else None
    if not isinstance(buckets, Mapping):
        return frozenset()
    found = set()
    for i, word in enumerate(words):
        bucket = buckets.get(str(i))
        count = bucket.get("doc_count") if isinstance(bucket, Mapping) else 0
        if isinstance(count, int) and count > 0:
            found.add(word)
    return frozenset(found)


def lexical_query(
    words: Sequence[tuple[str, int]],
    filters: Filters,
    options: LexicalOptions,
    names: Collection[str] = frozenset(),
) -> Body:
    """The BM25 query: one ``match`` per word, in the field ``options`` choose.

    A word in ``names`` (it names a speaker within the filters, `speaker_probe`) matches
    ``speaker_text`` boosted by count × ``speaker_weight``, when that weight is > 0; every
    other word matches ``text`` (``key="turn"``) or ``window`` (``key="window"``) boosted by
    its count. At least one word must match: the filter alone scores nothing.
    """
    if not words:
        raise ValueError("a lexical query needs at least one word")
    text_field = WINDOW if options.key == "window" else TEXT
    should: list[Body] = []
    for word, count in words:
        if options.speaker_weight > 0 and word in names:
            field, boost = SPEAKER_TEXT, count * options.speaker_weight
        else:
            field, boost = text_field, float(count)
        should.append({"match": {field: {"query": word, "boost": boost}}})
    return {
        "bool": {"should": should, "minimum_should_match": 1, "filter": filter_clauses(filters)}
    }


def ranked_search(query: Body, k: int, *, timeout_ms: int) -> Body:
    """A search for the ``k`` best hits of ``query`` (``lexical_query``, ``knn_query``),
    best first, ties by uid ascending (as the in-process tier breaks them).

    ``timeout_ms`` is the cluster's own limit: past it, each shard answers with what it has
    found and the answer says ``timed_out`` (``Hits.exhaustive`` False).
    """
    if not 0 < k <= MAX_PAGE:
        raise ValueError(f"k must be in 1..{MAX_PAGE}, got {k}")
    if timeout_ms < 1:
        raise ValueError(f"timeout_ms must be at least 1, got {timeout_ms}")
    return {
        "size": k,
        "query": query,
        "sort": _BY_SCORE_THEN_UID,
        "track_scores": True,
        "track_total_hits": False,
        "_source": False,  # the uid is the _id
        "timeout": f"{timeout_ms}ms",
    }


def knn_query(vector: npt.NDArray[np.float32], k: int, filters: Filters) -> Body:
    """Approximate k-NN with ``filters`` inside the clause (efficient filtering).

    The filter is applied while the HNSW graph is walked, so the ``k`` hits all lie in scope
    (a post-filter could return fewer); a scope of fewer than ``k`` documents is searched
    exactly (Lucene engine).
    """
    vec = np.asarray(vector, dtype=np.float32)
    if vec.ndim != 1 or not np.isfinite(vec).all():
        raise ValueError(f"vector must be 1-d and finite, got shape {vec.shape}")
    return {"knn": {EMBEDDING: {"vector": vec.tolist(), "k": k, "filter": filter_query(filters)}}}


def inner_product(scores: npt.NDArray[np.float32], space: Space) -> npt.NDArray[np.float32]:
    """The inner products behind k-NN scores (vectors L2-normalised).

    OpenSearch maps a similarity to a positive score: ``cosinesimil`` gives (1 + cos) / 2;
    ``innerproduct`` gives ip + 1 for ip > 0 and 1 / (1 − ip) otherwise (Lucene and Faiss
    alike, approximate and exact search alike).
    """
    s = np.asarray(scores, dtype=np.float64)
    if space == "cosinesimil":
        ip = 2.0 * s - 1.0
    else:
        ip = np.where(s > 1.0, s - 1.0, 1.0 - 1.0 / np.maximum(s, np.finfo(np.float64).tiny))
    return ip.astype(np.float32)


def hybrid_search(lexical: Body, dense: Body, k: int, *, timeout_ms: int) -> Body:
    """A ``hybrid`` query over a `lexical_query` and a `knn_query`, in that order.

    Run it with ``search_pipeline`` set to a pipeline made by
    ``opensearch_mapping.hybrid_pipeline``: its weights follow this order.
    """
    body = ranked_search({"hybrid": {"queries": [lexical, dense]}}, k, timeout_ms=timeout_ms)
    del body["sort"], body["track_scores"]  # a hybrid query is ranked by its pipeline
    return body
