"""The shard: applying the change feed, context turns, snapshots, and the tailer on a real store."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from indexer.bm25_index import TantivyBM25Index
from indexer.errors import SnapshotError
from indexer.faiss_index import FaissVectorIndex
from indexer.ingest import Ingestor
from indexer.models import Change, Filters, Role
from indexer.pg_store import PgStore
from indexer.shard import IndexShard
from indexer.snapshot import REQUIRED, load_snapshot, save_snapshot
from indexer.tailer import ChangeFeedTailer
from tests.conftest import drop_database
from tests.indexer.changes import utterance_change

DIM = 16
T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
TEXTS = [
    "we booked the flight to Lisbon for May",
    "remember the peanut allergy when ordering",
    "the dog Biscuit loves the beach",
    "dentist appointment on Thursday at nine",
    "call the plumber about the kitchen sink",
]


def new_shard() -> IndexShard:
    return IndexShard(
        lexical=TantivyBM25Index(tokenizer="en_stem"), vector=FaissVectorIndex(dim=DIM)
    )


def vec(i: int) -> np.ndarray:
    v = np.random.default_rng(i).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def change(
    seq: int, uid: int, turn: int, text: str, *, conv: str = "c1", deleted: bool = False
) -> Change:
    return utterance_change(
        seq,
        uid,
        text,
        turn=turn,
        started_at=T0 + timedelta(minutes=turn),
        embedding=vec(uid),
        conv=conv,
        deleted=deleted,
    )


def lexical_ids(shard: IndexShard, q: str) -> list[int]:
    return [
        int(i) for i in shard.search_lexical(q, 10, filters=Filters(tenant="t"), timeout_s=1).ids
    ]


def test_apply_upserts_deletes_and_context() -> None:
    shard = new_shard()
    shard.apply([change(i + 1, 100 + i, i, t) for i, t in enumerate(TEXTS)])
    assert shard.seq == 5 and len(shard) == 5
    assert lexical_ids(shard, "allergy") == [101]
    dense = shard.search_dense(vec(103), 1, filters=Filters(tenant="t"), timeout_s=1)
    assert list(dense.ids) == [103]
    ctx = shard.context(102, before=1, after=2)
    assert [r.uid for r in ctx] == [101, 103, 104]
    # delete and edit in one batch, in seq order; the later change wins
    shard.apply([change(6, 101, 1, "", deleted=True), change(7, 103, 3, "the orthodontist moved")])
    assert lexical_ids(shard, "allergy") == [] and lexical_ids(shard, "orthodontist") == [103]
    assert lexical_ids(shard, "dentist") == []
    assert [r.uid for r in shard.context(102, before=2, after=1)] == [100, 103]
    assert shard.records([101, 103])[0] is None and shard.seq == 7
    # a tombstone followed by a re-insert of the same uid in one batch keeps the doc
    shard.apply([change(8, 104, 4, "", deleted=True), change(9, 104, 4, "plumber came back")])
    assert lexical_ids(shard, "plumber") == [104]


def test_snapshot_roundtrip(tmp_path: Path) -> None:
    shard = new_shard()
    shard.apply([change(i + 1, 100 + i, i, t) for i, t in enumerate(TEXTS)])
    shard.apply([change(6, 102, 2, "", deleted=True)])
    info = save_snapshot(shard, tmp_path / "snap", model_id="m1", dim=DIM)
    assert info.seq == 6 and info.count == 4
    loaded = new_shard()
    load_snapshot(loaded, tmp_path / "snap", model_id="m1", dim=DIM)
    assert loaded.seq == 6 and len(loaded) == 4
    for q in ("flight Lisbon", "dog beach", "plumber"):
        assert lexical_ids(loaded, q) == lexical_ids(shard, q)
    f = Filters(tenant="t")
    assert list(loaded.search_dense(vec(104), 3, filters=f, timeout_s=1).ids) == list(
        shard.search_dense(vec(104), 3, filters=f, timeout_s=1).ids
    )
    with pytest.raises(SnapshotError):
        load_snapshot(new_shard(), tmp_path / "snap", model_id="other-model", dim=DIM)
    with pytest.raises(SnapshotError):
        load_snapshot(new_shard(), tmp_path / "missing", model_id="m1", dim=DIM)
    (tmp_path / "snap" / "vectors.npy").write_bytes(b"garbage")
    with pytest.raises(SnapshotError):
        load_snapshot(new_shard(), tmp_path / "snap", model_id="m1", dim=DIM)


def snapshot_of_texts(path: Path) -> None:
    shard = new_shard()
    shard.apply([change(i + 1, 100 + i, i, t) for i, t in enumerate(TEXTS)])
    save_snapshot(shard, path, model_id="m1", dim=DIM)


def drop_last_record(snap: Path) -> None:
    """A self-consistent cut: the last record and its vector row both gone."""
    for file in sorted((snap / "records").glob("*.npy")):
        if ".bytes" not in file.name:
            column = np.load(file)
            np.save(file, column[:-1])
    vectors = np.load(snap / "vectors.npy")
    np.save(snap / "vectors.npy", vectors[:-1])


def alter_one_byte(snap: Path) -> None:
    file = snap / "records" / "text.bytes.npy"
    data = bytearray(file.read_bytes())
    at = data.index(b"Lisbon")
    data[at] = ord("X")  # same length, different text
    file.write_bytes(bytes(data))


def alter_the_lexical_index(snap: Path) -> None:
    file = max((snap / "lexical").glob("*.term"), key=lambda f: f.stat().st_size)
    data = bytearray(file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    file.write_bytes(bytes(data))


def lose_a_lexical_file(snap: Path) -> None:
    next((snap / "lexical").glob("*.idx")).unlink()


def cut_short(snap: Path) -> None:
    data = (snap / "vectors.npy").read_bytes()
    (snap / "vectors.npy").write_bytes(data[: len(data) // 2])


def cut_the_manifest(snap: Path) -> None:
    data = (snap / "manifest.json").read_bytes()
    (snap / "manifest.json").write_bytes(data[: len(data) // 2])


def format_1(snap: Path) -> None:
    manifest = json.loads((snap / "manifest.json").read_text())
    manifest["format"] = 1
    del manifest["files"]
    (snap / "manifest.json").write_text(json.dumps(manifest))


def format_2(snap: Path) -> None:
    """What the previous format wrote: records as JSON lines, no lexical files."""
    manifest = json.loads((snap / "manifest.json").read_text())
    line = json.dumps({"uid": 100, "tenant": "t", "text": "we booked the flight"}) + "\n"
    (snap / "records.jsonl").write_text(line)
    manifest["format"] = 2
    manifest["files"] = {
        "records.jsonl": {"bytes": len(line), "sha256": "0" * 64},
        "vectors.npy": manifest["files"]["vectors.npy"],
    }
    (snap / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    "tear",
    [
        drop_last_record,
        alter_one_byte,
        alter_the_lexical_index,
        lose_a_lexical_file,
        cut_short,
        cut_the_manifest,
        format_1,
        format_2,
    ],
)
def test_a_torn_or_altered_snapshot_is_refused_never_loaded(tmp_path: Path, tear) -> None:
    snap = tmp_path / "snap"
    snapshot_of_texts(snap)
    tear(snap)
    shard = new_shard()
    with pytest.raises(SnapshotError):
        load_snapshot(shard, snap, model_id="m1", dim=DIM)
    assert len(shard) == 0 and shard.seq == 0  # nothing half-loaded: rebuilt from the store


def test_a_snapshot_leaves_no_temporary_directory_behind(tmp_path: Path) -> None:
    snapshot_of_texts(tmp_path / "snap")
    snapshot_of_texts(tmp_path / "snap")  # replacing one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snap"]
    manifest = json.loads((tmp_path / "snap" / "manifest.json").read_text())
    assert set(REQUIRED) < set(manifest["files"]) and manifest["lexical"] is True
    assert any(name.startswith("lexical/") for name in manifest["files"])
    load_snapshot(new_shard(), tmp_path / "snap", model_id="m1", dim=DIM)


class HashEmbedder:
    """A deterministic stand-in embedder for feed tests (the real one is tested elsewhere)."""

    dim = DIM
    model_id = "hash-16"

    def embed_batch(self, texts):
        return (
            np.stack([vec(hash(t) % 10_000) for t in texts])
            if texts
            else np.empty((0, DIM), np.float32)
        )

    def embed_query(self, text):
        return vec(hash(text) % 10_000)


@pytest.mark.integration
def test_tailer_keeps_the_shard_fresh_and_waits_for_seq(database_url: str) -> None:
    from indexer.models import UtteranceIn

    store = PgStore.connect(database_url)
    shard = new_shard()
    tailer = ChangeFeedTailer(store=store, shard=shard, poll_interval_s=0.02)
    ingestor = Ingestor(store=store, embedder=HashEmbedder(), on_commit=lambda _s: tailer.poke())
    try:
        tailer.start()
        for i, text in enumerate(TEXTS):
            seq = ingestor.ingest(
                "t",
                [
                    UtteranceIn(
                        id=f"x{i}",
                        conversation_id="c",
                        speaker="Maya",
                        role=Role.USER,
                        text=text,
                        started_at=T0 + timedelta(minutes=i),
                        user_id="maya",
                    )
                ],
            ).seq
            assert tailer.wait_for(seq, 2.0)
            assert shard.seq >= seq
        assert len(shard) == 5 and lexical_ids(shard, "Biscuit")
        seq = store.delete_user("t", "maya")
        tailer.poke()
        assert tailer.wait_for(seq, 2.0)
        assert len(shard) == 0 and lexical_ids(shard, "Biscuit") == []
        assert not tailer.wait_for(seq + 1000, 0.05)  # a seq that never comes: times out
    finally:
        tailer.stop()
        store.close()


def test_with_the_feed_failing_a_seq_wait_answers_at_once(database_url: str) -> None:
    """The store gone, waiting for a seq cannot help: the wait says no within 0.1 s, so a
    search marks itself stale instead of holding its admission slot for half its budget."""
    import time

    store = PgStore.connect(database_url)
    tailer = ChangeFeedTailer(store=store, shard=new_shard(), poll_interval_s=0.02)
    try:
        tailer.start()
        assert tailer.wait_for(0, 1.0)
        drop_database(database_url)
        deadline = time.monotonic() + 30
        while tailer.last_error is None:
            assert time.monotonic() < deadline, "the feed never noticed the store was gone"
            time.sleep(0.02)
        t0 = time.monotonic()
        assert not tailer.wait_for(1, 2.0)
        assert time.monotonic() - t0 < 1.0  # not the 2 s asked for
    finally:
        tailer.stop()
        store.close()


def test_a_slow_snapshot_does_not_hold_up_the_feed(database_url: str) -> None:
    import threading

    from indexer.models import UtteranceIn

    store = PgStore.connect(database_url)
    shard = new_shard()
    started, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def slow_snapshot() -> None:
        calls.append(shard.seq)
        started.set()
        release.wait(10)

    tailer = ChangeFeedTailer(
        store=store,
        shard=shard,
        poll_interval_s=0.02,
        snapshot=slow_snapshot,
        snapshot_interval_s=0.0,
    )
    ingestor = Ingestor(store=store, embedder=HashEmbedder(), on_commit=lambda _s: tailer.poke())

    def say(i: int) -> int:
        utterance = UtteranceIn(
            id=f"s{i}",
            conversation_id="c",
            speaker="Maya",
            role=Role.USER,
            text=TEXTS[i],
            started_at=T0 + timedelta(minutes=i),
            user_id="maya",
        )
        return ingestor.ingest("t", [utterance]).seq

    try:
        tailer.start()
        assert tailer.wait_for(say(0), 2.0)
        assert started.wait(2.0)  # a snapshot is in flight, and blocked
        seq = say(1)
        assert tailer.wait_for(seq, 2.0)  # ... and the feed is still applied
        assert len(calls) == 1  # one snapshot at a time
    finally:
        release.set()
        tailer.stop()  # waits for the one in flight, then takes the last
        store.close()
    assert calls[-1] == shard.seq


def window_ids(shard: IndexShard, q: str) -> list[int]:
    from indexer.models import LexicalOptions

    hits = shard.search_lexical(
        q, 10, filters=Filters(tenant="t"), timeout_s=1, options=LexicalOptions(key="window")
    )
    return sorted(int(i) for i in hits.ids)


def test_the_window_key_follows_inserts_edits_and_deletes() -> None:
    shard = new_shard()
    shard.apply([change(1, 1, 0, "what about Lisbon"), change(2, 2, 2, "we fly in May")])
    assert window_ids(shard, "lisbon") == [1, 2]  # turn 2's window holds turn 1
    # a turn inserted between them: turn 2 is re-keyed, its window is now the new turn
    shard.apply([change(3, 3, 1, "and the dentist")])
    assert window_ids(shard, "lisbon") == [1, 3]
    assert window_ids(shard, "dentist") == [2, 3]
    # an edit of the new turn reaches its follower's window
    shard.apply([change(4, 3, 1, "and the plumber")])
    assert window_ids(shard, "dentist") == []
    assert window_ids(shard, "plumber") == [2, 3]
    # a delete takes the words out of the follower's window too: nothing still says "plumber"
    shard.apply([change(5, 3, 1, "", deleted=True)])
    assert window_ids(shard, "plumber") == []
    assert window_ids(shard, "lisbon") == [1, 2]  # turn 2 follows turn 1 again


def test_a_snapshot_loads_only_into_the_store_it_was_built_from(tmp_path: Path) -> None:
    shard = new_shard()
    shard.apply([change(i + 1, 100 + i, i, t) for i, t in enumerate(TEXTS)])
    save_snapshot(shard, tmp_path / "snap", model_id="m", dim=DIM, store_id="store-a")
    load_snapshot(new_shard(), tmp_path / "snap", model_id="m", dim=DIM, store_id="store-a")
    with pytest.raises(SnapshotError, match="built from store store-a, not store-b"):
        load_snapshot(new_shard(), tmp_path / "snap", model_id="m", dim=DIM, store_id="store-b")
    # a snapshot that names no store (written before stores had identities) is not trusted
    save_snapshot(shard, tmp_path / "old", model_id="m", dim=DIM)
    with pytest.raises(SnapshotError, match="built from store None"):
        load_snapshot(new_shard(), tmp_path / "old", model_id="m", dim=DIM, store_id="store-a")


def test_the_window_key_is_filled_on_load_and_from_a_snapshot(tmp_path: Path) -> None:
    shard = new_shard()
    shard.apply([change(i + 1, i + 1, i, t) for i, t in enumerate(TEXTS[:3])])
    save_snapshot(shard, tmp_path / "snap", model_id="m", dim=DIM)
    restored = new_shard()
    load_snapshot(restored, tmp_path / "snap", model_id="m", dim=DIM)
    # "peanut" is turn 2's own word and turn 3's previous turn
    assert window_ids(shard, "peanut") == window_ids(restored, "peanut") == [2, 3]


def test_speakers_are_counted_per_user_and_per_tenant() -> None:
    shard = new_shard()
    shard.apply([change(1, 1, 0, "hello"), change(2, 2, 1, "again")])
    assert shard.speakers("t", "maya") == ["Maya"] and shard.speakers("t") == ["Maya"]
    assert shard.speakers("t", "someone-else") == [] and shard.speakers("other") == []
    shard.apply([change(3, 1, 0, "", deleted=True)])
    assert shard.speakers("t", "maya") == ["Maya"]  # one utterance of Maya's is left
    shard.apply([change(4, 2, 1, "", deleted=True)])
    assert shard.speakers("t", "maya") == [] and shard.speakers("t") == []


def test_question_flags_follow_the_text() -> None:
    shard = new_shard()
    shard.apply([change(1, 1, 0, "did you book it?"), change(2, 2, 1, "yes, for May")])
    assert shard.questions([1, 2, 99]) == [True, False, False]
    shard.apply([change(3, 1, 0, "we booked it")])  # edited into a statement
    assert shard.questions([1]) == [False]
    shard.apply([change(4, 2, 1, "", deleted=True)])
    assert shard.questions([2]) == [False]
