"""Bulk writes of the OpenSearch index tier: the actions of one applied batch (pure bodies).

Every action carries ``routing`` = the tenant. Every search names its tenant (``Filters``
requires it), so routing by tenant sends a search to the one shard that holds the tenant's
documents instead of fanning it out to all of them, and the shard's top ``k`` is the index's.
The cost is balance: a tenant's documents all live on one shard. A tenant too big for one
shard needs ``index.routing_partition_size`` (set when the index is created: a tenant then
spreads over that many shards and a search reads only those), or an index of its own.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from indexer.models import Change
from indexer.opensearch_mapping import (
    CONVERSATION_ID,
    EMBEDDING,
    ID,
    IS_QUESTION,
    ROLE,
    SPEAKER,
    SPEAKER_TEXT,
    STARTED_AT,
    STARTED_AT_ISO,
    TENANT,
    TEXT,
    TURN,
    UID,
    USER_ID,
    WINDOW,
    Body,
)
from indexer.opensearch_windows import ApplyPlan
from ranking.question_prior import is_question

__all__ = ["bulk_actions", "bulk_bodies", "bulk_failures", "doc_source"]

#: One bulk action: its metadata line and, except for a delete, its document line.
Action = list[Body]


def doc_source(change: Change, window: str) -> Body:
    """The indexed document of an upsert, with its window key (``opensearch_windows``)."""
    if change.deleted or change.embedding is None:
        raise ValueError(f"uid {change.uid} is a delete: it has no document")
    u = change.utterance
    source: Body = {
        UID: change.uid,
        ID: u.id,
        TENANT: u.tenant,
        CONVERSATION_ID: u.conversation_id,
        SPEAKER: u.speaker,
        SPEAKER_TEXT: u.speaker,
        ROLE: str(u.role),
        STARTED_AT: u.started_at.timestamp(),
        STARTED_AT_ISO: u.started_at.isoformat(),
        TURN: u.turn,
        TEXT: u.text,
        WINDOW: window,
        IS_QUESTION: is_question(u.text),
        EMBEDDING: np.asarray(change.embedding, dtype=np.float32).tolist(),
    }
    if u.user_id is not None:  # absent, so that no user_id filter matches it
        source[USER_ID] = u.user_id
    return source


def bulk_actions(index: str, plan: ApplyPlan) -> list[Action]:
    """The actions of a plan: index each upsert, delete each delete, update each re-key.

    A re-key is a partial update of ``window`` alone: the turn's vector and fields stay as
    stored, so re-keying reads no vector back.
    """
    actions: list[Action] = []
    for upsert in plan.upserts:
        meta = _meta(index, upsert.change.uid, upsert.change.utterance.tenant)
        actions.append([{"index": meta}, doc_source(upsert.change, upsert.window)])
    for uid, tenant in plan.deletes:
        actions.append([{"delete": _meta(index, uid, tenant)}])
    for rekey in plan.rekeys:
        actions.append(
            [{"update": _meta(index, rekey.uid, rekey.tenant)}, {"doc": {WINDOW: rekey.window}}]
        )
    return actions


def _meta(index: str, uid: int, tenant: str) -> Body:
    return {"_index": index, "_id": str(uid), "routing": tenant}


def bulk_bodies(actions: Sequence[Action], max_actions: int) -> Iterator[list[Body]]:
    """The lines of ``_bulk`` requests of at most ``max_actions`` actions each."""
    if max_actions < 1:
        raise ValueError(f"max_actions must be at least 1, got {max_actions}")
    for start in range(0, len(actions), max_actions):
        yield [line for action in actions[start : start + max_actions] for line in action]


def bulk_failures(response: Mapping[str, object]) -> list[str]:
    """The failed items of a ``_bulk`` answer, as messages; empty when all succeeded.

    A delete or re-key of a document that is not there (404) is no failure: applying a batch
    again finds its deletes done.
    """
    items = response.get("items")
    if not response.get("errors") or not isinstance(items, list):
        return []
    failures = []
    for item in items:
        if not isinstance(item, Mapping):
            continue
        for op, result in item.items():
            if not isinstance(result, Mapping) or "error" not in result:
                continue
            if result.get("status") == 404 and op in ("delete", "update"):
                continue
            failures.append(f"{op} {result.get('_id')}: {result.get('error')}")
    return failures
