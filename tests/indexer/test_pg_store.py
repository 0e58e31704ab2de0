"""The store of record on a real PostgreSQL + pgvector: upserts, deletes, tenancy, change feed."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
import pytest

from indexer.errors import Conflict, NotFound
from indexer.models import ConversationIn, Role, UtteranceIn
from indexer.pg_store import PgStore

pytestmark = pytest.mark.integration
T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def store(database_url: str) -> Iterator[PgStore]:
    s = PgStore.connect(database_url, max_size=4)
    yield s
    s.close()


def utt(i: int, conv: str = "c1", user: str | None = "u1", text: str | None = None) -> UtteranceIn:
    return UtteranceIn(
        id=f"{conv}-{i}",
        conversation_id=conv,
        speaker="Maya" if i % 2 == 0 else "Agent",
        role=Role.USER if i % 2 == 0 else Role.AGENT,
        text=text or f"utterance number {i} of {conv}",
        started_at=T0 + timedelta(seconds=10 * i),
        user_id=user,
    )


def vecs(n: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, 8)).astype(np.float32)
    out: np.ndarray = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


def test_migrations_are_idempotent(database_url: str) -> None:
    PgStore.connect(database_url).close()
    PgStore.connect(database_url).close()
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT version FROM schema_migrations").fetchall()
    assert rows == [(1,), (2,), (3,)]


def test_upsert_and_transcript_roundtrip(store: PgStore) -> None:
    batch = [utt(i) for i in range(4)]
    seq = store.upsert_utterances("t1", batch, vecs(4))
    assert seq >= 4
    got = store.transcript("t1", "c1")
    assert [u.id for u in got] == [u.id for u in batch]
    assert [u.turn for u in got] == [0, 1, 2, 3]
    assert got[0].user_id == "u1" and got[0].role is Role.USER
    conv = store.get_conversation("t1", "c1")
    assert conv.user_id == "u1"


def test_upsert_is_idempotent_by_client_id(store: PgStore) -> None:
    batch = [utt(i) for i in range(3)]
    first = store.upsert_utterances("t1", batch, vecs(3))
    again = store.upsert_utterances("t1", batch, vecs(3))
    assert again == first  # identical resend: no new change
    assert len(store.transcript("t1", "c1")) == 3
    edited = [utt(1, text="edited text")]
    after = store.upsert_utterances("t1", edited, vecs(1, seed=1))
    assert after > first
    texts = {u.id: u.text for u in store.transcript("t1", "c1")}
    assert texts["c1-1"] == "edited text" and len(texts) == 3
    changes = store.changes_since(first, 100)
    assert [c.utterance.id for c in changes] == ["c1-1"]
    assert changes[0].embedding is not None and changes[0].embedding.shape == (8,)


def test_tenants_are_isolated(store: PgStore) -> None:
    store.upsert_utterances("t1", [utt(0)], vecs(1))
    with pytest.raises(NotFound):
        store.get_conversation("t2", "c1")
    with pytest.raises(NotFound):
        store.transcript("t2", "c1")
    with pytest.raises(NotFound):
        store.delete_conversation("t2", "c1")
    # the same client ids in another tenant are a different conversation
    store.upsert_utterances("t2", [utt(0, user="other")], vecs(1))
    assert store.get_conversation("t1", "c1").user_id == "u1"
    assert store.get_conversation("t2", "c1").user_id == "other"


def test_conversation_owner_conflict(store: PgStore) -> None:
    store.upsert_utterances("t1", [utt(0)], vecs(1))
    with pytest.raises(Conflict):
        store.upsert_utterances("t1", [utt(1, user="someone-else")], vecs(1))
    assert len(store.transcript("t1", "c1")) == 1  # the failed batch wrote nothing


def test_put_conversation_reannounces_utterances(store: PgStore) -> None:
    store.put_conversation("t1", ConversationIn(id="c1", user_id="u1", agent_id="a"))
    seq = store.upsert_utterances("t1", [utt(0), utt(1)], vecs(2))
    store.put_conversation("t1", ConversationIn(id="c1", user_id="u9", agent_id="a"))
    changes = store.changes_since(seq, 100)
    assert sorted(c.utterance.id for c in changes) == ["c1-0", "c1-1"]
    assert {c.utterance.user_id for c in changes} == {"u9"}


def test_tombstones_reach_the_feed_and_wipe_content(store: PgStore) -> None:
    store.upsert_utterances("t1", [utt(i) for i in range(3)], vecs(3))
    store.upsert_utterances("t1", [utt(i, conv="c2") for i in range(2)], vecs(2))
    store.upsert_utterances("t1", [utt(i, conv="c3", user="u2") for i in range(2)], vecs(2))
    seq = store.max_seq()
    store.delete_utterance("t1", "c1-0")
    with pytest.raises(NotFound):
        store.delete_utterance("t1", "c1-0")  # already deleted
    store.delete_conversation("t1", "c2")
    with pytest.raises(NotFound):
        store.transcript("t1", "c2")
    store.delete_user("t1", "u2")
    store.delete_user("t1", "nobody")  # idempotent
    changes = store.changes_since(seq, 100)
    assert sorted(c.utterance.id for c in changes) == ["c1-0", "c2-0", "c2-1", "c3-0", "c3-1"]
    assert all(c.deleted and c.embedding is None and c.utterance.text == "" for c in changes)
    assert [u.id for u in store.transcript("t1", "c1")] == ["c1-1", "c1-2"]
    with pytest.raises(NotFound):
        store.get_conversation("t1", "c3")


def test_iter_changes_pages_without_gaps(store: PgStore) -> None:
    n = 23
    store.upsert_utterances("t1", [utt(i) for i in range(n)], vecs(n))
    got = list(store.iter_changes(0, page=5))
    assert len(got) == n
    assert [c.seq for c in got] == sorted(c.seq for c in got)


def test_change_feed_never_skips_a_late_commit(store: PgStore, database_url: str) -> None:
    """Transaction A draws its seq first but commits last; B must wait for A.

    Without the feed lock, B would take seq A+1, commit first, and a tailer reading between
    the commits would advance past A's seq and never see A.
    """
    store.upsert_utterances("t1", [utt(0)], vecs(1))
    cursor = store.max_seq()
    a_conn = psycopg.connect(database_url)
    from pgvector.psycopg import register_vector

    register_vector(a_conn)
    try:
        # A: a writer that follows the store's protocol by hand and stalls before COMMIT.
        a_conn.execute("SELECT pg_advisory_xact_lock(%s)", (0x636F6E766D656D,))
        a_seq = a_conn.execute(
            "UPDATE utterances SET text = 'from A', seq = nextval('change_seq')"
            " WHERE id = 'c1-0' RETURNING seq"
        ).fetchone()
        assert a_seq is not None
        b_done = threading.Event()

        def writer_b() -> None:
            store.upsert_utterances("t1", [utt(1, text="from B")], vecs(1))
            b_done.set()

        b = threading.Thread(target=writer_b)
        b.start()
        time.sleep(0.3)
        assert not b_done.is_set(), "B must wait for A's commit"
        seen = store.changes_since(cursor, 100)  # the tailer polls between the two
        assert seen == []
        a_conn.commit()
        b.join(5)
        assert b_done.is_set()
    finally:
        a_conn.close()
    seen = store.changes_since(cursor, 100)
    assert [c.utterance.text for c in seen] == ["from A", "from B"]
    assert seen[0].seq == a_seq[0] < seen[1].seq


def test_change_feed_under_concurrent_writers(store: PgStore) -> None:
    """Many concurrent writers and a polling tailer: the tailer sees every change once."""
    writers, per_writer = 6, 15
    seen: list[int] = []
    stop = threading.Event()

    def tail() -> None:
        cursor = 0
        while not stop.is_set() or store.max_seq() > cursor:
            for change in store.changes_since(cursor, 50):
                seen.append(change.seq)
                cursor = change.seq

    def write(w: int) -> None:
        for i in range(per_writer):
            store.upsert_utterances("t1", [utt(i, conv=f"w{w}")], vecs(1, seed=i))

    tailer = threading.Thread(target=tail)
    tailer.start()
    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    tailer.join(10)
    final = [c.seq for c in store.iter_changes(0)]
    assert len(final) == writers * per_writer
    assert sorted(seen) == final  # each once, none skipped
    assert seen == final  # and in order


def test_reembedding_rewrites_stale_vectors_but_never_a_newer_write(store: PgStore) -> None:
    store.upsert_utterances("t", [utt(0), utt(1), utt(2)], vecs(3), embedding_model="old/text")
    seq = store.max_seq()
    assert store.count_stale_embeddings("old/text") == 0
    assert store.count_stale_embeddings("new/text") == 3
    rows = store.stale_embeddings("new/text", after_uid=0, limit=10)
    assert [text for _, _, text in rows] == [utt(i).text for i in range(3)]
    # utterance 1 is edited (by a replica on the old model) after the re-embedder read it
    store.upsert_utterances(
        "t", [utt(1, text="edited")], vecs(1, seed=5), embedding_model="old/text"
    )
    store.write_embeddings("new/text", [(uid, text) for uid, _, text in rows], vecs(3, seed=9))
    assert store.count_stale_embeddings("new/text") == 1  # the edit keeps its own vector
    left = store.stale_embeddings("new/text", after_uid=0, limit=10)
    assert [text for _, _, text in left] == ["edited"]
    by_uid = {c.uid: c for c in store.changes_since(0, 100) if c.embedding is not None}
    rewritten = [c for c in by_uid.values() if c.embedding_model == "new/text"]
    assert len(rewritten) == 2
    assert all(c.seq <= seq for c in rewritten)  # a vector rewrite is not a content change


def test_a_resend_with_changed_fields_replaces_every_stored_field(
    store: PgStore, database_url: str
) -> None:
    from dataclasses import replace

    from indexer.models import Source

    base = utt(0)
    store.upsert_utterances("t", [base], vecs(1), embedding_model="m/text")
    seq = store.max_seq()
    store.upsert_utterances("t", [base], vecs(1), embedding_model="m/text")
    assert store.max_seq() == seq  # identical: a no-op
    changes = {
        "metadata": replace(base, metadata={"topic": "pets"}),
        "source": replace(base, source=Source.ASR, asr_confidence=0.9),
        "asr_confidence": replace(base, source=Source.ASR, asr_confidence=0.4),
    }
    for what, changed in changes.items():
        store.upsert_utterances("t", [changed], vecs(1), embedding_model="m/text")
        assert store.max_seq() > seq, what
        seq = store.max_seq()
    store.upsert_utterances("t", [changes["asr_confidence"]], vecs(1, 3), embedding_model="m2/x")
    assert store.max_seq() > seq  # another model's vector replaces the stored one
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT metadata, source, asr_confidence, embedding_model FROM utterances"
            " WHERE id = %s",
            (base.id,),
        ).fetchone()
    assert row is not None
    assert row[0] == {} and row[1] == "asr" and row[2] == pytest.approx(0.4) and row[3] == "m2/x"
