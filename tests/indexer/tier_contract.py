"""The contract every ``IndexTier`` passes: one suite, run against each implementation.

A test module subclasses ``TierContract`` and provides a ``tier_factory`` fixture: a callable
that returns a fresh, empty tier for vectors of a given dimension. The in-process tier runs it
in ``test_tier_contract.py``, the real Milvus server in ``test_milvus_tier.py``, and a real
OpenSearch node in ``test_opensearch_tier.py`` when ``OPENSEARCH_URL`` is set.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from indexer.models import Change, Filters, LexicalOptions, Role
from indexer.tier import IndexTier
from tests.indexer.changes import utterance_change

DIM = 16
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TierFactory = Callable[[int], IndexTier]

#: ids that a naive query language would choke on: each must still only match itself
AWKWARD = ['qu"ote', "back\\slash", "new\nline", "tab\there", "~tilde", "émoji 😀", "a' or 1=1"]


def vec(i: int) -> np.ndarray:
    v = np.random.default_rng(i).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


class Feed:
    """Builds change-feed entries with increasing ``seq``."""

    def __init__(self) -> None:
        self.seq = 0

    def put(
        self,
        uid: int,
        text: str,
        *,
        turn: int,
        tenant: str = "t1",
        conv: str = "c1",
        user: str | None = "maya",
        speaker: str = "Maya",
        role: Role = Role.USER,
        minutes: float | None = None,
        vector: np.ndarray | None = None,
    ) -> Change:
        self.seq += 1
        return utterance_change(
            self.seq,
            uid,
            text,
            turn=turn,
            started_at=T0 + timedelta(minutes=turn if minutes is None else minutes),
            embedding=vec(uid) if vector is None else vector,
            tenant=tenant,
            conv=conv,
            user=user,
            speaker=speaker,
            role=role,
        )

    def delete(self, uid: int, *, turn: int, tenant: str = "t1", conv: str = "c1") -> Change:
        self.seq += 1
        return utterance_change(
            self.seq,
            uid,
            "",
            turn=turn,
            started_at=T0,
            embedding=None,
            tenant=tenant,
            conv=conv,
            user=None,
            speaker="",
            deleted=True,
        )


def lex(tier: IndexTier, q: str, f: Filters, **options: object) -> list[int]:
    opts = LexicalOptions(**options)  # type: ignore[arg-type]
    return [int(u) for u in tier.search_lexical(q, 10, filters=f, timeout_s=5, options=opts).ids]


def dense(tier: IndexTier, v: np.ndarray, f: Filters, k: int = 10) -> list[int]:
    return [int(u) for u in tier.search_dense(v, k, filters=f, timeout_s=5).ids]


CONVERSATION = [
    (1, "Maya", "we booked the flight to Lisbon for May"),
    (2, "Sam", "did you remember the peanut allergy?"),
    (3, "Maya", "yes, I told the airline twice"),
    (4, "Sam", "the dog Biscuit loves the beach"),
    (5, "Maya", "dentist appointment on Thursday at nine"),
]


class TierContract:
    """Subclass this and give it a ``tier_factory`` fixture."""

    @pytest.fixture
    def tier(self, tier_factory: TierFactory) -> IndexTier:
        return tier_factory(DIM)

    def load(self, tier: IndexTier, feed: Feed, *, tenant: str = "t1") -> None:
        tier.apply(
            [
                feed.put(
                    uid + (0 if tenant == "t1" else 1000),
                    text,
                    turn=uid,
                    speaker=who,
                    tenant=tenant,
                )
                for uid, who, text in CONVERSATION
            ]
        )

    def test_applied_changes_are_searchable_and_covered(self, tier: IndexTier) -> None:
        feed = Feed()
        assert tier.seq == 0
        self.load(tier, feed)
        assert tier.seq == feed.seq == 5
        f = Filters(tenant="t1")
        assert lex(tier, "peanut allergy", f)[0] == 2
        assert dense(tier, vec(4), f)[0] == 4
        rec = tier.records([3, 999])
        assert rec[1] is None and rec[0] is not None
        assert (rec[0].id, rec[0].text, rec[0].speaker, rec[0].turn) == (
            "u3",
            "yes, I told the airline twice",
            "Maya",
            3,
        )
        assert rec[0].started_at == T0 + timedelta(minutes=3)

    def test_dense_search_is_exact_and_scoped(self, tier: IndexTier) -> None:
        feed = Feed()
        changes = [
            feed.put(
                10 + i, f"note {i}", turn=i, user="maya" if i % 2 else "ravi", conv=f"c{i % 3}"
            )
            for i in range(30)
        ]
        tier.apply(changes)
        q = vec(7777)
        f = Filters(tenant="t1", user_id="maya")
        admitted = [c for c in changes if c.utterance.user_id == "maya"]
        scores = {c.uid: float(np.dot(q, c.embedding)) for c in admitted}  # type: ignore[arg-type]
        want = sorted(scores, key=lambda u: -scores[u])[:5]
        hits = tier.search_dense(q, 5, filters=f, timeout_s=5)
        assert [int(u) for u in hits.ids] == want
        np.testing.assert_allclose(hits.scores, [scores[u] for u in want], rtol=1e-4, atol=1e-5)

    def test_deletes_and_edits_leave_no_trace(self, tier: IndexTier) -> None:
        feed = Feed()
        self.load(tier, feed)
        f = Filters(tenant="t1")
        tier.apply(
            [
                feed.delete(2, turn=2),
                feed.put(4, "the cat Pepper sleeps all day", turn=4, speaker="Sam"),
            ]
        )
        assert lex(tier, "peanut allergy", f) == []
        assert lex(tier, "Biscuit beach", f) == []
        assert lex(tier, "Pepper", f) == [4]
        assert 2 not in dense(tier, vec(2), f)
        assert tier.records([2]) == [None]
        live, vectors = tier.live_vectors(tier.search_dense(vec(2), 10, filters=f, timeout_s=5))
        assert 2 not in live.ids and vectors.shape == (len(live), DIM)
        assert tier.seq == feed.seq

    def test_applying_a_batch_again_changes_nothing(self, tier: IndexTier) -> None:
        feed = Feed()
        batch = [feed.put(uid, text, turn=uid, speaker=who) for uid, who, text in CONVERSATION]
        batch.append(feed.delete(5, turn=5))
        tier.apply(batch)
        f = Filters(tenant="t1")
        before = (
            lex(tier, "the", f),
            dense(tier, vec(1), f),
            tier.context_many([3], before=2, after=2),
        )
        tier.apply(batch)  # a worker resuming from an older cursor
        after = (
            lex(tier, "the", f),
            dense(tier, vec(1), f),
            tier.context_many([3], before=2, after=2),
        )
        assert before == after
        tier.apply([feed.delete(5, turn=5), feed.delete(424242, turn=0)])  # gone, and unknown
        assert tier.records([5, 424242]) == [None, None]

    def test_tenants_never_see_each_other(self, tier: IndexTier) -> None:
        feed = Feed()
        self.load(tier, feed, tenant="t1")
        self.load(tier, feed, tenant="t2")
        for tenant, offset in (("t1", 0), ("t2", 1000)):
            f = Filters(tenant=tenant)
            assert set(lex(tier, "the peanut dog flight dentist airline", f)) <= {
                u + offset for u in range(1, 6)
            }
            assert set(dense(tier, vec(3), f)) == {u + offset for u in range(1, 6)}
            ctx = tier.context_many([3 + offset], before=5, after=5)
            assert {r.tenant for r in ctx[3 + offset]} == {tenant}
        assert tier.speakers("t3") == []
        assert lex(tier, "peanut", Filters(tenant="t3")) == []

    @pytest.mark.parametrize("awkward", AWKWARD)
    def test_awkward_ids_match_only_themselves(self, tier: IndexTier, awkward: str) -> None:
        feed = Feed()
        tier.apply(
            [
                feed.put(
                    1,
                    "orchid watering schedule",
                    turn=0,
                    tenant=awkward,
                    user=awkward,
                    conv=awkward,
                    speaker=awkward,
                ),
                feed.put(
                    2,
                    "orchid watering schedule",
                    turn=0,
                    tenant="plain",
                    user="plain",
                    conv="plain",
                    speaker="plain",
                ),
            ]
        )
        for f in (
            Filters(tenant=awkward),
            Filters(
                tenant=awkward, user_id=awkward, conversation_ids=(awkward,), speakers=(awkward,)
            ),
        ):
            assert lex(tier, "orchid", f) == [1]
            assert dense(tier, vec(1), f) == [1]
        assert lex(tier, "orchid", Filters(tenant=awkward, user_id="plain")) == []
        assert tier.speakers(awkward, awkward) == [awkward]
        assert tier.speakers(awkward) == [awkward]
        rec = tier.records([1])[0]
        assert (
            rec is not None
            and (rec.tenant, rec.user_id, rec.conversation_id, rec.speaker) == (awkward,) * 4
        )

    def test_every_filter_admits_exactly_what_filters_admits(self, tier: IndexTier) -> None:
        feed = Feed()
        changes = [
            feed.put(
                100 + i,
                "garden tomatoes and basil",
                turn=i,
                conv=f"c{i % 3}",
                user=("maya", "ravi", None)[i % 3 if i % 5 else 2],
                speaker=("Maya", "Sam", "Ravi")[i % 4 % 3],
                role=(Role.USER, Role.AGENT)[i % 2],
                minutes=float(i * 10),
            )
            for i in range(24)
        ]
        tier.apply(changes)
        since = (T0 + timedelta(minutes=50)).timestamp()
        until = (T0 + timedelta(minutes=150)).timestamp()  # inclusive: turn 15 is in
        cases = [
            Filters(tenant="t1"),
            Filters(tenant="t1", user_id="maya"),
            Filters(tenant="t1", conversation_ids=("c0", "c2")),
            Filters(tenant="t1", speakers=("Sam",)),
            Filters(tenant="t1", roles=(Role.AGENT,)),
            Filters(tenant="t1", since=since, until=until),
            Filters(tenant="t1", user_id="ravi", speakers=("Maya", "Ravi"), roles=(Role.USER,)),
        ]
        for f in cases:
            want = {
                c.uid
                for c in changes
                if f.admits(
                    tenant=c.utterance.tenant,
                    user_id=c.utterance.user_id,
                    conversation_id=c.utterance.conversation_id,
                    speaker=c.utterance.speaker,
                    role=c.utterance.role,
                    started_at=c.utterance.started_at.timestamp(),
                )
            }
            got_dense = {int(u) for u in tier.search_dense(vec(1), 100, filters=f, timeout_s=5).ids}
            got_lex = {
                int(u) for u in tier.search_lexical("tomatoes", 100, filters=f, timeout_s=5).ids
            }
            assert got_dense == want, f
            assert got_lex == want, f

    def test_context_is_the_live_turns_around_a_hit_in_order(self, tier: IndexTier) -> None:
        feed = Feed()
        self.load(tier, feed)
        ctx = tier.context_many([3, 1, 999], before=1, after=2)
        assert set(ctx) == {1, 3}
        assert [r.uid for r in ctx[3]] == [2, 4, 5]
        assert [r.uid for r in ctx[1]] == [2, 3]
        tier.apply([feed.delete(4, turn=4)])
        assert [r.uid for r in tier.context_many([3], before=1, after=2)[3]] == [2, 5]

    def test_the_window_key_finds_a_reply_by_its_question(self, tier: IndexTier) -> None:
        feed = Feed()
        self.load(tier, feed)
        f = Filters(tenant="t1")
        assert set(lex(tier, "peanut allergy", f, key="window")) == {2, 3}
        assert 3 not in lex(tier, "peanut allergy", f, key="turn")
        tier.apply([feed.delete(2, turn=2)])  # the question goes, and its words with it
        assert lex(tier, "peanut allergy", f, key="window") == []
        assert 3 in lex(tier, "flight Lisbon", f, key="window")  # turn 1 is 3's previous now
        tier.apply([feed.put(6, "are you packing sunscreen", turn=6, speaker="Sam", minutes=3.5)])
        assert 4 in lex(tier, "sunscreen", f, key="window")  # inserted before 4

    def test_speakers_follow_the_live_utterances(self, tier: IndexTier) -> None:
        feed = Feed()
        self.load(tier, feed)
        tier.apply(
            [feed.put(50, "hello from Ravi", turn=9, conv="c9", user="ravi", speaker="Ravi")]
        )
        assert tier.speakers("t1", "maya") == ["Maya", "Sam"]
        assert tier.speakers("t1", "ravi") == ["Ravi"]
        assert tier.speakers("t1") == ["Maya", "Ravi", "Sam"]
        tier.apply([feed.delete(2, turn=2), feed.delete(4, turn=4)])  # Sam's only turns
        assert tier.speakers("t1", "maya") == ["Maya"]
        assert tier.speakers("t1") == ["Maya", "Ravi"]

    def test_questions_are_flagged(self, tier: IndexTier) -> None:
        feed = Feed()
        self.load(tier, feed)
        assert tier.questions([1, 2, 3, 999]) == [False, True, False, False]

    def test_stopwords_and_speaker_routing(self, tier: IndexTier) -> None:
        feed = Feed()
        tier.apply(
            [
                feed.put(1, "thanks Maya, see you", turn=1, speaker="Sam"),
                feed.put(2, "I love climbing on weekends", turn=2, speaker="Maya"),
                feed.put(3, "climbing is too scary for me", turn=3, speaker="Sam"),
            ]
        )
        f = Filters(tenant="t1")
        routed = lex(tier, "does Maya like climbing", f, drop_stopwords=True, speaker_weight=1.0)
        assert routed[0] == 2 and 1 not in routed

    def test_a_batch_across_many_conversations_applies_and_reads(self, tier: IndexTier) -> None:
        """40 conversations in one batch (LoCoMo loads like this): a remote tier must not
        send one OR of 40 ranges, which Milvus refuses."""
        feed = Feed()
        batch = [
            feed.put(1 + c * 3 + t, f"session {c} turn {t} about kayaks", turn=t, conv=f"s{c}")
            for c in range(40)
            for t in range(3)
        ]
        tier.apply(batch)
        hits = tier.search_lexical("kayaks", 200, filters=Filters(tenant="t1"), timeout_s=5)
        assert len(hits) == 120
        ctx = tier.context_many([1 + c * 3 + 1 for c in range(40)], before=1, after=1)
        assert all(len(turns) == 2 for turns in ctx.values()) and len(ctx) == 40

    def test_reads_follow_edits_and_deletes_of_what_was_read(self, tier: IndexTier) -> None:
        """A remote tier may keep what it read while the feed stands still; every applied
        change must be seen by the next read (records, flags, context, speakers)."""
        feed = Feed()
        self.load(tier, feed)
        assert [r.text for r in tier.context_many([2], before=1, after=1)[2]] == [
            CONVERSATION[0][2],
            CONVERSATION[2][2],
        ]
        assert tier.questions([3]) == [False]
        tier.apply([feed.put(3, "did they confirm it?", turn=3, speaker="Otto")])
        assert [r.text for r in tier.context_many([2], before=1, after=1)[2]] == [
            CONVERSATION[0][2],
            "did they confirm it?",
        ]
        assert tier.questions([3]) == [True]
        assert "Otto" in tier.speakers("t1", "maya")
        tier.apply([feed.delete(3, turn=3)])
        assert tier.records([3]) == [None]
        assert [r.uid for r in tier.context_many([2], before=1, after=1)[2]] == [1, 4]
        assert "Otto" not in tier.speakers("t1", "maya")

    def test_context_at_any_turn_number(self, tier: IndexTier) -> None:
        """Turn numbers are not bounded: around 2**20 (where a remote tier's turn key may
        stop) and past 2**40 the neighbours are the same live turns in order."""
        feed = Feed()
        for base, conv in ((2**20 - 2, "edge"), (2**40, "far"), (0, "start")):
            tier.apply(
                [
                    feed.put(base + t + 10, f"{conv} turn {t}", turn=base + t, conv=conv, minutes=t)
                    for t in range(5)
                ]
            )
            mid = base + 2 + 10
            got = tier.context_many([mid], before=2, after=2)[mid]
            assert [r.uid for r in got] == [base + 10, base + 11, base + 13, base + 14], conv
            assert {r.conversation_id for r in got} == {conv}
