"""Reading OpenSearch answers into the tier's values: `Hits`, `DocRecord`, `Turn` (pure).

An answer is JSON as the client decodes it; a field of the wrong shape raises
`IndexUnavailable` (the cluster answered something this code does not understand), never a
bare ``KeyError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import numpy as np
import numpy.typing as npt

from indexer.errors import IndexUnavailable
from indexer.models import Role
from indexer.opensearch_mapping import (
    CONVERSATION_ID,
    EMBEDDING,
    ID,
    ROLE,
    SPEAKER,
    STARTED_AT,
    STARTED_AT_ISO,
    TENANT,
    TEXT,
    TURN,
    UID,
    USER_ID,
)
from indexer.opensearch_windows import Turn
from indexer.records import DocRecord

__all__ = [
    "hits_of",
    "record_of_source",
    "sources",
    "speakers_of",
    "turn_of_source",
    "vector_of_source",
]


def _mapping(value: object, what: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise IndexUnavailable(f"unexpected OpenSearch answer: {what} is {type(value).__name__}")
    return value


def _list(value: object, what: str) -> list[object]:
    if not isinstance(value, list):
        raise IndexUnavailable(f"unexpected OpenSearch answer: {what} is {type(value).__name__}")
    return value


def _hit_list(response: Mapping[str, object]) -> list[object]:
    return _list(_mapping(response.get("hits"), "hits").get("hits"), "hits.hits")


def hits_of(
    response: Mapping[str, object],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], bool]:
    """The uids (``_id``) and scores of a search's hits, in order, and whether it saw all.

    Not exhaustive when the search timed out or a shard failed: the hits are then the best
    of what was searched.
    """
    hits = [_mapping(h, "a hit") for h in _hit_list(response)]
    ids = np.fromiter((int(str(h.get("_id"))) for h in hits), dtype=np.int64, count=len(hits))
    scores = np.empty(len(hits), dtype=np.float64)
    for i, hit in enumerate(hits):
        score = hit.get("_score")
        if score is None:  # sorted searches may leave _score out: the first sort value is it
            score = _list(hit.get("sort"), "hit.sort")[0]
        if not isinstance(score, int | float):
            raise IndexUnavailable(f"unexpected OpenSearch answer: a hit's score is {score!r}")
        scores[i] = score
    shards = response.get("_shards")
    failed = shards.get("failed", 0) if isinstance(shards, Mapping) else 0
    exhaustive = not response.get("timed_out") and not failed
    return ids, scores, exhaustive


def sources(response: Mapping[str, object]) -> list[Mapping[str, object]]:
    """The ``_source`` of each hit, in order."""
    return [_mapping(_mapping(h, "a hit").get("_source"), "_source") for h in _hit_list(response)]


def _str(source: Mapping[str, object], name: str) -> str:
    value = source.get(name)
    if not isinstance(value, str):
        raise IndexUnavailable(f"stored document lacks {name!r}: {value!r}")
    return value


def _int(source: Mapping[str, object], name: str) -> int:
    value = source.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise IndexUnavailable(f"stored document lacks integer {name!r}: {value!r}")
    return value


def _float(source: Mapping[str, object], name: str) -> float:
    value = source.get(name)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise IndexUnavailable(f"stored document lacks number {name!r}: {value!r}")
    return float(value)


def record_of_source(source: Mapping[str, object]) -> DocRecord:
    """The record of a stored document (``opensearch_bulk.doc_source``)."""
    user_id = source.get(USER_ID)
    return DocRecord(
        uid=_int(source, UID),
        tenant=_str(source, TENANT),
        id=_str(source, ID),
        conversation_id=_str(source, CONVERSATION_ID),
        user_id=user_id if isinstance(user_id, str) else None,
        turn=_int(source, TURN),
        speaker=_str(source, SPEAKER),
        role=Role(_str(source, ROLE)),
        text=_str(source, TEXT),
        started_at=datetime.fromisoformat(_str(source, STARTED_AT_ISO)),
    )


def turn_of_source(source: Mapping[str, object]) -> Turn:
    """Where a stored document lies in its conversation (``opensearch_lookups.TURN_FIELDS``)."""
    return Turn(
        uid=_int(source, UID),
        tenant=_str(source, TENANT),
        conversation_id=_str(source, CONVERSATION_ID),
        started_at=_float(source, STARTED_AT),
        turn=_int(source, TURN),
        text=_str(source, TEXT),
    )


def vector_of_source(source: Mapping[str, object], dim: int) -> npt.NDArray[np.float32]:
    """The stored embedding of a document, shape ``(dim,)``."""
    vector = np.asarray(_list(source.get(EMBEDDING), EMBEDDING), dtype=np.float32)
    if vector.shape != (dim,):
        raise IndexUnavailable(f"stored embedding has shape {vector.shape}, expected ({dim},)")
    return vector


def speakers_of(response: Mapping[str, object]) -> tuple[list[str], str | None]:
    """The speakers of a ``speakers_page`` answer and the ``after`` of the next page (None:
    this was the last)."""
    aggs = _mapping(response.get("aggregations"), "aggregations")
    page = _mapping(aggs.get("speakers"), "aggregations.speakers")
    names = []
    for bucket in _list(page.get("buckets"), "speakers.buckets"):
        key = _mapping(_mapping(bucket, "a bucket").get("key"), "bucket.key")
        names.append(_str(key, "speaker"))
    after = page.get("after_key")
    if not names or not isinstance(after, Mapping):
        return names, None
    return names, _str(after, "speaker")
