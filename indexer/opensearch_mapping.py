"""The OpenSearch index tier's index, cursor and search-pipeline bodies (pure: no client, no I/O).

One document per live utterance, ``_id`` = its uid, routed by tenant. Its fields:

==================  =================================================================
``text``            the turn, analysed by ``convmem_text`` (below): what BM25 "turn" reads
``window``          the previous live turn and this one, ``"<previous>\\n<text>"``, the same
                    analyser: what BM25 "window" reads (``LexicalOptions.key``)
``speaker_text``    the speaker's name, the same analyser: speaker routing
                    (``LexicalOptions.speaker_weight``)
``tenant`` ...      keywords for `Filters`: tenant, user_id (absent when None), conversation_id,
                    speaker, role; and the utterance's own ``id``
``started_at``      double, unix seconds: exact for sub-second times, so inclusive bounds
                    behave as ``Filters.matches`` says
``started_at_iso``  the original ISO time with its offset (stored, not indexed)
``turn``, ``uid``   integer; (started_at, turn, uid) is the turn order
``is_question``     ``ranking.is_question`` of the text, computed when written
``embedding``       ``knn_vector``, HNSW; vectors are L2-normalised, so inner product and
                    cosine rank alike
==================  =================================================================

``convmem_text`` is not OpenSearch's built-in ``english`` analyser, on purpose: it rebuilds what
the in-process tier (``indexer.bm25_index``, tantivy ``en_stem``) does, so the two tiers see the
same terms: split on every non-alphanumeric character, drop tokens of 40 characters or more,
lowercase, Snowball English stemming (``porter2``). The built-in analyser also drops a stop list
at index time, which would make ``PLAIN_BM25`` differ between tiers and would drop "not" and
"no"; here stop words are left out per query (``LexicalOptions.drop_stopwords``). Splitting on
non-alphanumerics also lets the client cut a query into the very terms the server indexes,
which speaker routing needs (``indexer.opensearch_requests.query_words``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

__all__ = [
    "ANALYZER",
    "Body",
    "Engine",
    "Space",
    "cursor_doc",
    "cursor_index_body",
    "hybrid_pipeline",
    "identity_doc",
    "index_body",
]

#: A request or response body: JSON as Python values.
Body = dict[str, object]
Engine = Literal["lucene", "faiss"]
Space = Literal["innerproduct", "cosinesimil"]

ANALYZER = "convmem_text"

UID = "uid"
ID = "id"
TENANT = "tenant"
USER_ID = "user_id"
CONVERSATION_ID = "conversation_id"
SPEAKER = "speaker"
SPEAKER_TEXT = "speaker_text"
ROLE = "role"
STARTED_AT = "started_at"
STARTED_AT_ISO = "started_at_iso"
TURN = "turn"
TEXT = "text"
WINDOW = "window"
IS_QUESTION = "is_question"
EMBEDDING = "embedding"

#: Fields of a record (everything but the vector and the window).
RECORD_FIELDS = (
    UID,
    ID,
    TENANT,
    USER_ID,
    CONVERSATION_ID,
    SPEAKER,
    ROLE,
    STARTED_AT,
    STARTED_AT_ISO,
    TURN,
    TEXT,
)
_TEXT_FIELDS = (TEXT, WINDOW, SPEAKER_TEXT)
_KEYWORD_FIELDS = (TENANT, USER_ID, CONVERSATION_ID, SPEAKER, ROLE, ID)
#: The turn order of a conversation: the sort of every context and window lookup.
TURN_ORDER = (STARTED_AT, TURN, UID)

# Tokens of 40 bytes or more are dropped by tantivy; OpenSearch counts characters.
_MAX_TOKEN_CHARS = 39
_SPLIT_ON = r"[^\p{L}\p{N}]+"  # Java regex: every run of non-alphanumerics separates tokens


def _analysis() -> Body:
    return {
        "tokenizer": {"convmem_split": {"type": "pattern", "pattern": _SPLIT_ON}},
        "filter": {
            "convmem_length": {"type": "length", "min": 1, "max": _MAX_TOKEN_CHARS},
            "convmem_stem": {"type": "stemmer", "language": "porter2"},
        },
        "analyzer": {
            ANALYZER: {
                "type": "custom",
                "tokenizer": "convmem_split",
                "filter": ["convmem_length", "lowercase", "convmem_stem"],
            }
        },
    }


def index_body(
    *,
    dim: int,
    engine: Engine = "lucene",
    space: Space = "innerproduct",
    shards: int = 1,
    replicas: int = 1,
    m: int = 16,
    ef_construction: int = 128,
    routing_partition_size: int | None = None,
) -> Body:
    """Settings and mapping of the utterance index (``PUT /<index>``).

    ``dim`` is the embedder's dimension; a vector of another length is refused by the cluster.
    ``engine`` is ``lucene`` (filter-while-search HNSW: the filter is applied inside the graph
    walk, and a scope smaller than ``k`` is searched exactly) or ``faiss``. ``_routing`` is
    required, so a write that forgets the tenant fails instead of landing on a wrong shard.
    ``routing_partition_size`` (1 < p < ``shards``) spreads each tenant over p shards instead
    of one (``opensearch_bulk`` says why a huge tenant needs it); it cannot be changed later.
    """
    for name, value in (("dim", dim), ("shards", shards), ("m", m)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if routing_partition_size is not None and not 1 < routing_partition_size < shards:
        raise ValueError(
            f"routing_partition_size must be in 2..{shards - 1}, got {routing_partition_size}"
        )
    if replicas < 0:
        raise ValueError(f"replicas must be >= 0, got {replicas}")
    if engine not in ("lucene", "faiss"):
        raise ValueError(f"engine must be 'lucene' or 'faiss', got {engine!r}")
    if space not in ("innerproduct", "cosinesimil"):
        raise ValueError(f"space must be 'innerproduct' or 'cosinesimil', got {space!r}")
    settings: Body = {"knn": True, "number_of_shards": shards, "number_of_replicas": replicas}
    if routing_partition_size is not None:
        settings["routing_partition_size"] = routing_partition_size
    return {
        "settings": {"index": settings, "analysis": _analysis()},
        "mappings": {
            "dynamic": "strict",
            "_routing": {"required": True},
            "properties": {
                **{name: {"type": "text", "analyzer": ANALYZER} for name in _TEXT_FIELDS},
                **{name: {"type": "keyword"} for name in _KEYWORD_FIELDS},
                STARTED_AT: {"type": "double"},
                STARTED_AT_ISO: {"type": "keyword", "index": False, "doc_values": False},
                TURN: {"type": "integer"},
                UID: {"type": "long"},
                IS_QUESTION: {"type": "boolean"},
                EMBEDDING: {
                    "type": "knn_vector",
                    "dimension": dim,
                    "method": {
                        "name": "hnsw",
                        "engine": engine,
                        "space_type": space,
                        "parameters": {"m": m, "ef_construction": ef_construction},
                    },
                },
            },
        },
    }


def cursor_index_body() -> Body:
    """The small index of change-feed cursors: per utterance index, its cursor and identity."""
    return {
        "settings": {"index": {"number_of_shards": 1, "auto_expand_replicas": "0-all"}},
        "mappings": {
            "dynamic": "strict",
            "properties": {
                "index": {"type": "keyword"},
                "seq": {"type": "long"},
                "identity": {"type": "keyword", "index": False, "doc_values": False},
            },
        },
    }


def cursor_doc(index: str, seq: int) -> Body:
    """The cursor of ``index`` (``_id`` = the index name): the highest change-feed ``seq``
    its documents cover."""
    if seq < 0:
        raise ValueError(f"seq must be >= 0, got {seq}")
    return {"index": index, "seq": seq}


def identity_doc(index: str, identity: str) -> Body:
    """What ``index`` was built from (``_id`` = ``<index>/identity``; no index name holds a
    "/"): the store and the vectors' model. A worker that finds another one rebuilds it."""
    return {"index": index, "identity": identity}


def hybrid_pipeline(weights: Sequence[float]) -> Body:
    """A search pipeline that fuses a ``hybrid`` query's sub-queries server-side.

    Each sub-query's scores are min-max normalised, then combined by a weighted arithmetic
    mean: ``score(d) = Σ_i w_i · (s_i(d) − min_i) / (max_i − min_i)``. ``weights`` follow the
    order of the hybrid query's ``queries`` (``opensearch_requests.hybrid_search``: lexical,
    then dense) and are scaled to sum to 1, as OpenSearch requires.
    """
    if len(weights) < 2:
        raise ValueError(f"a hybrid pipeline needs a weight per sub-query, got {list(weights)}")
    if not all(math.isfinite(w) and w >= 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"weights must be finite, >= 0 and not all 0, got {list(weights)}")
    total = math.fsum(weights)
    scaled = [w / total for w in weights]
    scaled[-1] = max(0.0, 1.0 - math.fsum(scaled[:-1]))  # so the floats sum to 1.0
    return {
        "description": "convmem: min-max normalised, weighted mean of lexical and dense",
        "phase_results_processors": [
            {
                "normalization-processor": {
                    "normalization": {"technique": "min_max"},
                    "combination": {
                        "technique": "arithmetic_mean",
                        "parameters": {"weights": scaled},
                    },
                }
            }
        ],
    }
