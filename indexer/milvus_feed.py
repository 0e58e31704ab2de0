"""Applying a batch of the change feed to a ``MilvusTier``: rows, window keys, speakers, cursor.

Per batch: read the changed uids' current rows (to know where a deleted turn was and whose
speaker counts change), read the turns near every change (``indexer.window_plan``), delete,
upsert the batch's documents and every re-keyed neighbour, recount the speakers whose
utterances changed, and last move the cursor. A worker that dies part way leaves the cursor
where it was, and the next one applies the batch again: every step is idempotent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from indexer.milvus_keys import ints_in, quoted
from indexer.milvus_schema import (
    RECORD_FIELDS,
    cursor_row,
    from_row,
    speaker_row,
    speaker_scopes,
    to_row,
)
from indexer.models import Change
from indexer.records import DocRecord, record_of
from indexer.window_plan import Turn, plan, turn_ranges

if TYPE_CHECKING:
    from indexer.milvus_tier import MilvusTier

#: rows per upsert call
WRITE_BATCH = 512


def apply_changes(tier: MilvusTier, changes: Sequence[Change]) -> None:
    latest: dict[int, Change] = {}
    for change in changes:
        latest[change.uid] = change
    upserts = {
        uid: record_of(ch)
        for uid, ch in latest.items()
        if not ch.deleted and ch.embedding is not None
    }
    deletes = sorted(uid for uid in latest if uid not in upserts)
    old = {r.uid: r for r in tier.records(latest) if r is not None}
    rows = _document_rows(tier, latest, upserts, deletes, old)
    client, name = tier.client, tier.collection
    if deletes:
        client.delete(name, ids=deletes, timeout=tier.timeout_s)
    for i in range(0, len(rows), WRITE_BATCH):
        client.upsert(name, rows[i : i + WRITE_BATCH], timeout=tier.timeout_s)
    _recount_speakers(tier, list(old.values()), list(upserts.values()))
    client.upsert(tier.meta, [cursor_row(changes[-1].seq)], timeout=tier.timeout_s)


def _document_rows(
    tier: MilvusTier,
    latest: dict[int, Change],
    upserts: dict[int, DocRecord],
    deletes: list[int],
    old: dict[int, DocRecord],
) -> list[dict[str, Any]]:
    touched = list(upserts.values()) + [old[u] for u in deletes if u in old]
    ranges = turn_ranges(touched + [old[u] for u in upserts if u in old])
    existing: dict[tuple[str, str], list[Turn]] = {k: [] for k in ranges}
    spans = {conv: [span] for conv, span in ranges.items()}
    for r in tier.read_spans(spans, ["uid", "started_at", "text"]):
        existing[(str(r["tenant"]), str(r["conversation_id"]))].append(
            Turn(int(r["uid"]), float(r["started_at"]), int(r["turn"]), str(r["text"]))
        )
    rows: list[dict[str, Any]] = []
    rekeys: dict[int, str] = {}
    for conv, (lo, _) in ranges.items():
        p = plan(
            existing[conv],
            [u for u in deletes if u in old and (old[u].tenant, old[u].conversation_id) == conv],
            [r for r in upserts.values() if (r.tenant, r.conversation_id) == conv],
            starts_at_first_turn=lo <= 0,
        )
        for uid, previous in p.upserts.items():
            embedding = latest[uid].embedding
            assert embedding is not None
            rows.append(to_row(upserts[uid], embedding, previous))
        rekeys.update(p.rekeys)
    if rekeys:
        for r in tier.query(tier.collection, ints_in("uid", rekeys), [*RECORD_FIELDS, "dense"]):
            rows.append(to_row(from_row(r), r["dense"], rekeys[int(r["uid"])]))
    return rows


def _recount_speakers(tier: MilvusTier, old: list[DocRecord], new: list[DocRecord]) -> None:
    """Re-derive the speaker rows of every (tenant, scope, speaker) the batch touched: one
    the batch writes is live; one only the batch's old rows had is counted again."""
    live = {(r.tenant, scope, r.speaker) for r in new for scope in speaker_scopes(r)}
    maybe = {(r.tenant, scope, r.speaker) for r in old for scope in speaker_scopes(r)} - live
    keep = [speaker_row(*triple) for triple in sorted(live)]
    drop: list[str] = []
    for tenant, scope, speaker in sorted(maybe):
        expr = f"tenant_k == {quoted(tenant)} and speaker_k == {quoted(speaker)}"
        if scope != "t":
            expr += f' and user_k == "{scope[1:]}"'  # a key: no quote or backslash in it
        row = speaker_row(tenant, scope, speaker)
        # Strong whatever the reads use: the count must see this batch's own writes
        if tier.count_where(expr, consistency="Strong") > 0:
            keep.append(row)
        else:
            drop.append(row["key"])
    if drop:
        tier.client.delete(tier.meta, ids=drop, timeout=tier.timeout_s)
    if keep:
        tier.client.upsert(tier.meta, keep, timeout=tier.timeout_s)
