"""What a batch of changes rewrites in a remote tier's conversations (pure).

A remote tier cannot keep every conversation's turn order in memory, so its feed worker reads
the turns near a batch's changes (``SLACK`` turns either side), and this module works out,
from those and the batch, which documents to write with which window key (the text of the
turn before; ``IndexDoc.context``), like ``IndexShard.apply`` does: each upserted turn, and
every turn whose previous turn changed (a turn inserted before it, edited or deleted).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from indexer.records import DocRecord

#: how many turns either side of a change the worker reads: a previous turn further away
#: than this (turns that arrived long after their start time) is not seen
SLACK = 8


@dataclass(frozen=True, slots=True)
class Turn:
    """What the plan needs of one live turn already in the tier."""

    uid: int
    started_at: float
    turn: int
    text: str

    @property
    def order_key(self) -> tuple[float, int, int]:
        return (self.started_at, self.turn, self.uid)


@dataclass
class Plan:
    #: upserted uid -> its window's previous text
    upserts: dict[int, str] = field(default_factory=dict)
    #: uids already in the tier (not in the batch) whose previous turn changed -> new text
    rekeys: dict[int, str] = field(default_factory=dict)


def turn_ranges(records: Iterable[DocRecord]) -> dict[tuple[str, str], tuple[int, int]]:
    """The turn range to read per ``(tenant, conversation_id)``: the batch's turns +- SLACK."""
    out: dict[tuple[str, str], tuple[int, int]] = {}
    for r in records:
        k = (r.tenant, r.conversation_id)
        lo, hi = out.get(k, (r.turn, r.turn))
        out[k] = (min(lo, r.turn), max(hi, r.turn))
    return {k: (lo - SLACK, hi + SLACK) for k, (lo, hi) in out.items()}


def plan(
    existing: Sequence[Turn],
    removed: Iterable[int],
    upserted: Sequence[DocRecord],
    *,
    starts_at_first_turn: bool,
) -> Plan:
    """Plan one conversation. ``existing``: its live turns read from the tier (any order);
    ``removed``: uids the batch deletes; ``upserted``: records the batch writes (they replace
    existing rows of the same uid). ``starts_at_first_turn``: ``existing`` reaches back to the
    conversation's start, so its earliest turn truly has no previous turn."""
    gone = set(removed) | {r.uid for r in upserted}
    old = sorted(existing, key=lambda t: t.order_key)
    new = sorted(
        [t for t in old if t.uid not in gone]
        + [Turn(r.uid, r.started_at.timestamp(), r.turn, r.text) for r in upserted],
        key=lambda t: t.order_key,
    )
    before_old = _previous(old)
    before_new = _previous(new)
    first_old = old[0].uid if old else None
    result = Plan()
    batch = {r.uid for r in upserted}
    for i, t in enumerate(new):
        prev = before_new[t.uid]
        if t.uid in batch:
            result.upserts[t.uid] = prev
            continue
        if i == 0 and not starts_at_first_turn:
            continue  # its previous turn lies before what was read: unknown, so unchanged
        if t.uid == first_old and not starts_at_first_turn:
            continue
        if before_old.get(t.uid) != prev:
            result.rekeys[t.uid] = prev
    return result


def _previous(turns: list[Turn]) -> dict[int, str]:
    return {t.uid: (turns[i - 1].text if i else "") for i, t in enumerate(turns)}
