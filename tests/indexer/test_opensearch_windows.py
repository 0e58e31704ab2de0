"""Window planning for a remote index (`opensearch_windows`): hand cases, then an oracle.

The oracle is the definition: after every batch, each live turn's window key is the text of
the previous live turn in its conversation by (started_at, turn, uid), a newline, and its
own text. The "cluster" below is a dict that takes a plan's writes as OpenSearch would
(index = overwrite, delete, partial update of a document that exists).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from indexer.models import Change
from indexer.opensearch_windows import (
    ApplyPlan,
    Turn,
    fetch_scope,
    missing_conversations,
    plan_apply,
    window_text,
)
from tests.indexer.changes import utterance_change

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
VEC = np.ones(2, dtype=np.float32)


def change(
    seq: int,
    uid: int,
    minute: float,
    text: str,
    *,
    conv: str = "c1",
    turn: int = 0,
    deleted: bool = False,
    tenant: str = "t",
) -> Change:
    return utterance_change(
        seq,
        uid,
        text,
        turn=turn,
        started_at=T0 + timedelta(minutes=minute),
        embedding=VEC,
        tenant=tenant,
        conv=conv,
        user=None,
        speaker="Ann",
        deleted=deleted,
    )


@dataclass
class Cluster:
    """What the index holds: each live document's turn and window key."""

    docs: dict[int, tuple[Turn, str]] = field(default_factory=dict)

    def read(self, changes: list[Change]) -> list[Turn]:
        """What the tier reads before planning: `fetch_scope`, then `missing_conversations`."""
        uids, conversations = fetch_scope(changes)
        stored = [
            t for t, _ in self.docs.values() if t.conversation in conversations or t.uid in uids
        ]
        extra = missing_conversations(changes, stored)
        return stored + [t for t, _ in self.docs.values() if t.conversation in extra]

    def write(self, plan: ApplyPlan, *, deletes_only: bool = False) -> None:
        for uid, _tenant in plan.deletes:
            self.docs.pop(uid, None)
        if deletes_only:
            return
        for up in plan.upserts:
            u = up.change.utterance
            turn = Turn(
                up.change.uid, u.tenant, u.conversation_id, u.started_at.timestamp(), u.turn, u.text
            )
            self.docs[turn.uid] = (turn, up.window)
        for rekey in plan.rekeys:
            if rekey.uid in self.docs:  # a partial update of a missing document is a 404
                self.docs[rekey.uid] = (self.docs[rekey.uid][0], rekey.window)

    def apply(self, changes: list[Change]) -> ApplyPlan:
        plan = plan_apply(changes, self.read(changes))
        self.write(plan)
        return plan

    def windows(self) -> dict[int, str]:
        return {uid: w for uid, (_, w) in self.docs.items()}

    def expected(self) -> dict[int, str]:
        out = {}
        by_conv: dict[tuple[str, str], list[Turn]] = {}
        for t, _ in self.docs.values():
            by_conv.setdefault(t.conversation, []).append(t)
        for turns in by_conv.values():
            turns.sort(key=lambda t: t.order_key)
            for i, t in enumerate(turns):
                out[t.uid] = window_text(turns[i - 1].text if i else "", t.text)
        return out


def test_window_text_is_the_previous_turn_then_this_one() -> None:
    assert window_text("", "hi") == "hi"
    assert window_text("Did you go?", "Yes, twice") == "Did you go?\nYes, twice"


def test_inserting_a_turn_rekeys_its_follower() -> None:
    c = Cluster()
    c.apply([change(1, 1, 0, "A"), change(2, 2, 2, "B")])
    assert c.windows() == {1: "A", 2: "A\nB"}
    plan = c.apply([change(3, 3, 1, "X")])  # between A and B
    assert [(u.change.uid, u.window) for u in plan.upserts] == [(3, "A\nX")]
    assert [(r.uid, r.window) for r in plan.rekeys] == [(2, "X\nB")]
    assert c.windows() == {1: "A", 2: "X\nB", 3: "A\nX"}


def test_deleting_a_turn_takes_its_words_out_of_the_next_window() -> None:
    c = Cluster()
    c.apply([change(1, 1, 0, "A"), change(2, 2, 1, "secret"), change(3, 3, 2, "C")])
    plan = c.apply([change(4, 2, 1, "", deleted=True)])
    assert plan.deletes == [(2, "t")]
    assert [(r.uid, r.window) for r in plan.rekeys] == [(3, "A\nC")]
    assert "secret" not in " ".join(c.windows().values())


def test_editing_a_turn_rekeys_its_follower_and_a_move_rekeys_both_places() -> None:
    c = Cluster()
    c.apply([change(1, 1, 0, "A"), change(2, 2, 1, "B"), change(3, 3, 2, "C")])
    c.apply([change(4, 1, 0, "A2")])
    assert c.windows()[2] == "A2\nB"
    c.apply([change(5, 2, 5, "B", conv="c2")])  # B moves to another conversation
    assert c.windows() == {1: "A2", 3: "A2\nC", 2: "B"}


def test_ties_in_time_are_ordered_by_turn_then_uid() -> None:
    c = Cluster()
    c.apply([change(1, 9, 0, "late uid", turn=1), change(2, 5, 0, "first", turn=0)])
    c.apply([change(3, 7, 0, "same turn, lower uid", turn=1)])
    assert c.windows() == {
        5: "first",
        7: "first\nsame turn, lower uid",
        9: "same turn, lower uid\nlate uid",
    }


def test_the_last_change_of_a_uid_in_a_batch_wins() -> None:
    c = Cluster()
    c.apply([change(1, 1, 0, "A"), change(2, 1, 0, "", deleted=True), change(3, 2, 1, "B")])
    assert c.windows() == {2: "B"}
    c.apply([change(4, 3, 2, "C"), change(5, 3, 2, "C2")])
    assert c.windows() == {2: "B", 3: "B\nC2"}


def test_a_delete_of_an_unknown_uid_is_planned_and_harmless() -> None:
    c = Cluster()
    c.apply([change(1, 1, 0, "A")])
    plan = c.apply([change(2, 99, 3, "", deleted=True)])
    assert plan.deletes == [(99, "t")] and plan.rekeys == [] and c.windows() == {1: "A"}


def test_a_batch_whose_deletes_landed_before_a_failure_still_rekeys_on_replay() -> None:
    c = Cluster()
    c.apply([change(1, 1, 0, "A"), change(2, 2, 1, "gone"), change(3, 3, 2, "C")])
    batch = [change(4, 2, 1, "", deleted=True)]
    c.write(plan_apply(batch, c.read(batch)), deletes_only=True)  # the re-key was lost
    assert c.windows()[3] == "gone\nC"
    c.apply(batch)  # the worker resumes from its cursor, before the batch
    assert c.windows()[3] == "A\nC"


@pytest.mark.parametrize("seed", range(6))
def test_random_batches_match_the_definition_and_replay_changes_nothing(seed: int) -> None:
    rng = np.random.default_rng(seed)
    c = Cluster()
    seq = 0
    next_uid = 1
    for _ in range(30):
        batch: list[Change] = []
        for _ in range(int(rng.integers(1, 8))):
            seq += 1
            live = list(c.docs)
            roll = rng.random()
            if roll < 0.5 or not live:  # a new turn, often at a time another already has
                uid, next_uid = next_uid, next_uid + 1
            else:
                uid = int(rng.choice(live + [next_uid + 1000]))
            minute = float(rng.integers(0, 6))
            conv = f"c{int(rng.integers(0, 3))}"
            tenant = ["t", "u"][uid % 2]  # a uid's tenant never changes
            deleted = 0.5 <= roll < 0.7
            text = f"w{seq}"
            turn = int(rng.integers(0, 3))
            batch.append(
                change(seq, uid, minute, text, conv=conv, turn=turn, deleted=deleted, tenant=tenant)
            )
        c.apply(batch)
        assert c.windows() == c.expected()
        before = dict(c.docs)
        c.apply(batch)  # idempotent: a worker resuming from an older cursor
        assert c.docs == before
