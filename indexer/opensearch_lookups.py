"""Lookups of the OpenSearch index tier: records, turns, context and speakers (pure bodies).

The searches are in ``indexer.opensearch_requests``; field names in ``opensearch_mapping``.
A lookup by uid reads every shard (a uid does not say its tenant); a lookup within a
conversation or a tenant is routed to the tenant's shard.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

from indexer.models import Filters
from indexer.opensearch_mapping import (
    CONVERSATION_ID,
    RECORD_FIELDS,
    SPEAKER,
    STARTED_AT,
    TENANT,
    TEXT,
    TURN,
    TURN_ORDER,
    UID,
    Body,
)
from indexer.opensearch_requests import MAX_PAGE, filter_query, search_routing
from indexer.opensearch_windows import ConversationKey, Turn

__all__ = ["TURN_FIELDS", "by_uids", "context_searches", "speakers_page", "turns_of"]

#: What an apply reads of each stored turn.
TURN_FIELDS = (UID, TENANT, CONVERSATION_ID, STARTED_AT, TURN, TEXT)


def by_uids(uids: Iterable[int], fields: Sequence[str] = RECORD_FIELDS) -> Body:
    """The stored ``fields`` of the live turns among ``uids`` (every shard: no tenant known).

    A terms query, not ``mget``: a document is routed by tenant, and a uid alone does not say
    which shard holds it.
    """
    distinct = sorted({int(u) for u in uids})
    if len(distinct) > MAX_PAGE:
        raise ValueError(f"at most {MAX_PAGE} uids per lookup, got {len(distinct)}")
    return {
        "size": len(distinct),
        "query": {"bool": {"filter": [{"terms": {UID: distinct}}]}},
        "_source": list(fields),
        "track_total_hits": False,
    }


def turns_of(
    conversations: Sequence[ConversationKey],
    uids: Sequence[int] = (),
    *,
    size: int = 1000,
    after: int | None = None,
) -> Body:
    """One page (by uid) of the live turns of ``conversations`` and of ``uids``: what an
    apply reads (`opensearch_windows.fetch_scope`). Page on with ``after`` = the last uid."""
    by_tenant: dict[str, list[str]] = {}
    for tenant, conversation_id in conversations:
        by_tenant.setdefault(tenant, []).append(conversation_id)
    should: list[Body] = [
        {"bool": {"filter": [{"term": {TENANT: t}}, {"terms": {CONVERSATION_ID: sorted(cs)}}]}}
        for t, cs in sorted(by_tenant.items())
    ]
    if uids:
        should.append({"terms": {UID: sorted({int(u) for u in uids})}})
    if not should:
        raise ValueError("turns_of needs a conversation or a uid")
    body: Body = {
        "size": size,
        "query": {"bool": {"filter": [{"bool": {"should": should, "minimum_should_match": 1}}]}},
        "_source": list(TURN_FIELDS),
        "sort": [{UID: "asc"}],
        "track_total_hits": False,
    }
    if after is not None:
        body["search_after"] = [after]
    return body


def context_searches(
    anchors: Sequence[Turn], *, index: str, before: int, after: int
) -> tuple[list[Body], list[tuple[int, Literal["before", "after"]]]]:
    """An ``msearch`` body for the turns around each anchor in its conversation.

    Per anchor, up to two searches: the ``before`` turns just earlier (sorted by the turn
    order, descending, from the anchor's key: ``search_after`` is exactly the tuple
    comparison of (started_at, turn, uid)) and the ``after`` turns just later. Returns the
    body's lines and, per search, (anchor uid, "before" | "after").
    """
    lines: list[Body] = []
    slots: list[tuple[int, Literal["before", "after"]]] = []
    for anchor in anchors:
        header: Body = {"index": index}
        routing = search_routing(anchor.tenant)
        if routing is not None:
            header["routing"] = routing
        scope = {
            "bool": {
                "filter": [
                    {"term": {TENANT: anchor.tenant}},
                    {"term": {CONVERSATION_ID: anchor.conversation_id}},
                ]
            }
        }
        side: Literal["before", "after"]
        for side, n, direction in (("before", before, "desc"), ("after", after, "asc")):
            if n <= 0:
                continue
            lines.append(header)
            lines.append(
                {
                    "size": n,
                    "query": scope,
                    "sort": [{name: direction} for name in TURN_ORDER],
                    "search_after": list(anchor.order_key),
                    "_source": list(RECORD_FIELDS),
                    "track_total_hits": False,
                }
            )
            slots.append((anchor.uid, side))
    return lines, slots


def speakers_page(tenant: str, user_id: str | None, *, after: str | None, size: int = 1000) -> Body:
    """One page of the distinct speakers of ``tenant`` (of ``user_id`` if given), by name.

    A composite aggregation, paged by ``after`` (the answer's ``after_key.speaker``), so a
    tenant with more speakers than one bucket list holds is still read in full.
    """
    scope = filter_query(Filters(tenant=tenant, user_id=user_id))
    composite: Body = {"size": size, "sources": [{"speaker": {"terms": {"field": SPEAKER}}}]}
    if after is not None:
        composite["after"] = {"speaker": after}
    return {
        "size": 0,
        "track_total_hits": False,
        "query": scope,
        "aggs": {"speakers": {"composite": composite}},
    }
