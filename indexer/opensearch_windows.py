"""What one batch of the change feed does to a remote index: the window keys it changes.

Pure (no client, no I/O), so it is tested without a cluster. The OpenSearch tier asks the
cluster for the turns of every conversation a batch touches (`fetch_scope`), then
`plan_apply` says what to write (`missing_conversations` names any more to read first):

- each upserted turn, with its window key: the text of the previous live turn in its
  conversation by (started_at, turn, uid), a newline, and its own text;
- each deleted uid;
- each turn *after* a changed one (inserted before it, edited, moved or deleted) that is not
  itself in the batch, with its window key computed afresh ("re-keyed"), so a deleted turn's
  words leave the index with it.

This is what ``IndexShard.apply`` does in memory. The followers are found in the new turn
order, from both where a changed turn was (the stored copy) and where the change puts it (a
tombstone keeps its conversation, time and turn), so a batch applied again, even after a
write that failed half-way, still re-keys the turn after a delete.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from indexer.models import Change

__all__ = [
    "ApplyPlan",
    "Rekey",
    "Turn",
    "Upsert",
    "fetch_scope",
    "missing_conversations",
    "plan_apply",
    "window_text",
]

ConversationKey = tuple[str, str]  # (tenant, conversation_id)
OrderKey = tuple[float, int, int]  # (started_at, turn, uid)


@dataclass(frozen=True, slots=True)
class Turn:
    """A stored turn as the tier's lookups read it: where it is, and its text."""

    uid: int
    tenant: str
    conversation_id: str
    started_at: float  # unix seconds, as stored
    turn: int
    text: str

    @property
    def conversation(self) -> ConversationKey:
        return (self.tenant, self.conversation_id)

    @property
    def order_key(self) -> OrderKey:
        return (self.started_at, self.turn, self.uid)


@dataclass(frozen=True, slots=True)
class Upsert:
    change: Change
    window: str


@dataclass(frozen=True, slots=True)
class Rekey:
    uid: int
    tenant: str
    window: str


@dataclass(frozen=True, slots=True)
class ApplyPlan:
    upserts: list[Upsert]
    #: (uid, tenant) of every uid the batch deletes, known to the index or not
    deletes: list[tuple[int, str]]
    rekeys: list[Rekey]


def window_text(previous: str, text: str) -> str:
    """The window key of a turn: the previous turn and this one (as ``bm25_index`` builds it)."""
    return f"{previous}\n{text}" if previous else text


def _live(change: Change) -> bool:
    return not change.deleted and change.embedding is not None


def _turn_of(change: Change) -> Turn:
    u = change.utterance
    return Turn(change.uid, u.tenant, u.conversation_id, u.started_at.timestamp(), u.turn, u.text)


def _latest(changes: Iterable[Change]) -> dict[int, Change]:
    latest: dict[int, Change] = {}
    for change in changes:  # in seq order: the last change of a uid wins
        latest[change.uid] = change
    return latest


def fetch_scope(changes: Sequence[Change]) -> tuple[list[int], list[ConversationKey]]:
    """The uids of a batch and the conversations its changes name: what to read first."""
    latest = _latest(changes)
    conversations = {_turn_of(c).conversation for c in latest.values()}
    return sorted(latest), sorted(conversations)


def missing_conversations(
    changes: Sequence[Change], stored: Iterable[Turn]
) -> list[ConversationKey]:
    """Conversations still to read: those of stored batch turns that no change names.

    An edit can move a turn to another conversation; the turn after its old place must be
    re-keyed, so that conversation's turns are needed too.
    """
    latest = _latest(changes)
    named = {_turn_of(c).conversation for c in latest.values()}
    return sorted({t.conversation for t in stored if t.uid in latest} - named)


def plan_apply(changes: Sequence[Change], stored: Iterable[Turn]) -> ApplyPlan:
    """What to write for ``changes`` (in seq order), given the stored live turns.

    ``stored`` must hold every stored live turn of the conversations of `fetch_scope` and
    `missing_conversations`, and every stored turn of a batch uid.
    """
    latest = _latest(changes)
    stored_by_uid = {t.uid: t for t in stored}

    # Where every changed turn was, and where its change puts it.
    positions: list[tuple[ConversationKey, OrderKey]] = []
    for uid, change in latest.items():
        new = _turn_of(change)
        positions.append((new.conversation, new.order_key))
        old = stored_by_uid.get(uid)
        if old is not None:
            positions.append((old.conversation, old.order_key))

    turns = {uid: t for uid, t in stored_by_uid.items() if uid not in latest}
    turns.update({uid: _turn_of(c) for uid, c in latest.items() if _live(c)})
    order: dict[ConversationKey, list[OrderKey]] = {}
    for t in turns.values():
        order.setdefault(t.conversation, []).append(t.order_key)
    for keys in order.values():
        keys.sort()

    def previous_text(t: Turn) -> str:
        keys = order[t.conversation]
        i = bisect.bisect_left(keys, t.order_key)
        return turns[keys[i - 1][2]].text if i > 0 else ""

    followers: set[int] = set()
    for conversation, key in positions:
        keys = order.get(conversation, [])
        i = bisect.bisect_right(keys, key)
        if i < len(keys):
            followers.add(keys[i][2])

    upserts = [
        Upsert(c, window_text(previous_text(turns[uid]), c.utterance.text))
        for uid, c in latest.items()
        if _live(c)
    ]
    deletes = [
        (uid, stored_by_uid[uid].tenant if uid in stored_by_uid else c.utterance.tenant)
        for uid, c in latest.items()
        if not _live(c)
    ]
    rekeys = [
        Rekey(uid, turns[uid].tenant, window_text(previous_text(turns[uid]), turns[uid].text))
        for uid in sorted(followers)
        if uid not in latest
    ]
    return ApplyPlan(upserts=upserts, deletes=deletes, rekeys=rekeys)
