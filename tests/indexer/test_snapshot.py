"""Snapshot format 3: a restarted shard answers exactly as the shard it was saved from.

A corpus with several tenants, users (one unknown), conversations, speakers, roles, questions,
awkward text and time zones is built through the change feed (edits and deletes included),
saved, and restored into an empty shard; every read of the tier protocol is then compared,
before and after both shards apply the same further changes.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from indexer.bm25_index import TantivyBM25Index, remove_stale
from indexer.errors import SnapshotError
from indexer.faiss_index import FaissVectorIndex
from indexer.models import Change, Filters, LexicalOptions, Role
from indexer.numpy_index import NumpyVectorIndex
from indexer.shard import IndexShard
from indexer.snapshot import FORMAT, load_snapshot, save_snapshot
from tests.indexer.changes import utterance_change

DIM = 8
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ZONES = [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30))]
WORDS = "flight Lisbon peanut allergy dog beach dentist plumber sink café 😀 naïve".split()
OPTIONS = [
    LexicalOptions(),
    LexicalOptions(drop_stopwords=True, speaker_weight=0.5),
    LexicalOptions(key="window"),
]


def new_shard() -> IndexShard:
    return IndexShard(lexical=TantivyBM25Index(), vector=FaissVectorIndex(dim=DIM))


def vec(rng: random.Random) -> np.ndarray:
    v = np.array([rng.gauss(0, 1) for _ in range(DIM)], np.float32)
    return v / np.linalg.norm(v)


class Corpus:
    """Random but reproducible change-feed batches over a few tenants and users."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.seq = 0
        self.uids: list[int] = []

    def put(self, uid: int) -> Change:
        rng = self.rng
        self.seq += 1
        tenant = rng.choice(["t1", "t2"])
        user = rng.choice(["maya", "sam", None])
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 8)))
        if rng.random() < 0.2:
            text += "?"
        started = T0 + timedelta(minutes=rng.randint(0, 50), microseconds=rng.randint(0, 999_999))
        return utterance_change(
            self.seq,
            uid,
            text,
            turn=rng.randint(0, 20),
            started_at=started.astimezone(rng.choice(ZONES)),
            embedding=vec(rng),
            tenant=tenant,
            conv=f"{tenant}-c{rng.randint(1, 4)}",
            user=user,
            speaker=rng.choice(["Maya", "Sam", "Dr Ngô"]),
            role=rng.choice(list(Role)),
        )

    def batch(self, n: int) -> list[Change]:
        out = []
        for _ in range(n):
            if self.uids and self.rng.random() < 0.25:
                uid = self.rng.choice(self.uids)
                if self.rng.random() < 0.5:
                    self.seq += 1
                    out.append(
                        utterance_change(
                            self.seq, uid, "", turn=0, started_at=T0, embedding=None, deleted=True
                        )
                    )
                    continue
            else:
                uid = 1000 + len(self.uids)
                self.uids.append(uid)
            out.append(self.put(uid))
        return out


def answers(shard: IndexShard, corpus: Corpus | list[int]) -> dict[str, object]:
    """Everything the tier protocol reads, for every scope, as plain values."""
    rng = random.Random(7)
    out: dict[str, object] = {"len": len(shard), "seq": shard.seq}
    scopes = [
        Filters(tenant=t, user_id=u, roles=r)
        for t in ("t1", "t2")
        for u in ("maya", "sam", None)
        for r in ((), (Role.AGENT,))
    ]
    for i, f in enumerate(scopes):
        for j, q in enumerate(["flight Lisbon", "the dog?", "Maya beach", "café naïve 😀"]):
            for o, options in enumerate(OPTIONS):
                hits = shard.search_lexical(q, 5, filters=f, timeout_s=5, options=options)
                out[f"lex{i}.{j}.{o}"] = (hits.ids.tolist(), hits.scores.tolist())
        for j in range(3):
            hits = shard.search_dense(vec(rng), 5, filters=f, timeout_s=5)
            out[f"dense{i}.{j}"] = (hits.ids.tolist(), hits.scores.tolist())
        out[f"speakers{i}"] = shard.speakers(f.tenant, f.user_id)
    uids = [*(corpus.uids if isinstance(corpus, Corpus) else corpus), 1, 99_999]
    out["records"] = [
        None if r is None else (repr(r), r.started_at.isoformat()) for r in shard.records(uids)
    ]
    out["questions"] = shard.questions(uids)
    out["context"] = {
        u: [r.uid for r in ctx] for u, ctx in shard.context_many(uids, before=2, after=3).items()
    }
    hits, vectors = shard.live_vectors(
        shard.search_dense(vec(rng), 50, filters=scopes[4], timeout_s=5)
    )
    out["live"] = (hits.ids.tolist(), vectors.tolist())
    return out


def built(seed: int = 0) -> tuple[IndexShard, Corpus]:
    shard, corpus = new_shard(), Corpus(seed)
    for n in (40, 25, 30):
        shard.apply(corpus.batch(n))
    return shard, corpus


def test_a_restored_shard_answers_as_the_built_one_and_both_go_on_alike(tmp_path: Path) -> None:
    shard, corpus = built()
    info = save_snapshot(shard, tmp_path / "snap", model_id="m", dim=DIM)
    assert info.count == len(shard) and info.seq == shard.seq
    restored = new_shard()
    assert load_snapshot(restored, tmp_path / "snap", model_id="m", dim=DIM) == info
    uids = list(corpus.uids)
    before = answers(shard, uids)
    assert answers(restored, uids) == before
    # the restored lexical index keeps changing on its own; the snapshot stays as it was
    for _ in range(3):
        changes = corpus.batch(20)
        shard.apply(changes)
        restored.apply(changes)
    assert answers(restored, corpus) == answers(shard, corpus)
    again = new_shard()
    load_snapshot(again, tmp_path / "snap", model_id="m", dim=DIM)
    assert answers(again, uids) == before
    assert again.seq == info.seq and len(again) == info.count
    # a snapshot of a restored shard is a snapshot like any other
    save_snapshot(restored, tmp_path / "snap2", model_id="m", dim=DIM)
    twice = new_shard()
    load_snapshot(twice, tmp_path / "snap2", model_id="m", dim=DIM)
    assert answers(twice, corpus) == answers(shard, corpus)


def test_an_empty_shard_round_trips(tmp_path: Path) -> None:
    save_snapshot(new_shard(), tmp_path / "snap", model_id="m", dim=DIM)
    restored = new_shard()
    info = load_snapshot(restored, tmp_path / "snap", model_id="m", dim=DIM)
    assert info.count == 0 and len(restored) == 0


def test_a_vector_index_without_bulk_load_and_mmapped_vectors_restore_alike(
    tmp_path: Path,
) -> None:
    shard, corpus = built(1)
    save_snapshot(shard, tmp_path / "snap", model_id="m", dim=DIM)
    numpy_shard = IndexShard(lexical=TantivyBM25Index(), vector=NumpyVectorIndex(dim=DIM))
    load_snapshot(numpy_shard, tmp_path / "snap", model_id="m", dim=DIM)
    mapped = new_shard()
    load_snapshot(mapped, tmp_path / "snap", model_id="m", dim=DIM, mmap=True)
    want = answers(shard, corpus)
    assert answers(mapped, corpus) == want
    got = answers(numpy_shard, corpus)
    assert {k: v for k, v in got.items() if k.startswith("lex")} == {
        k: v for k, v in want.items() if k.startswith("lex")
    }
    changes = corpus.batch(30)
    shard.apply(changes)
    mapped.apply(changes)  # a partition over read-only mapped rows grows into a copy
    assert answers(mapped, corpus) == answers(shard, corpus)


def test_a_naive_start_time_round_trips(tmp_path: Path) -> None:
    shard = new_shard()
    naive = datetime(2026, 3, 2, 9, 0, 0, 123_456)
    shard.apply(
        [
            utterance_change(
                1,
                7,
                "hello there",
                turn=0,
                started_at=naive,
                embedding=np.eye(DIM, dtype=np.float32)[0],
            )
        ]
    )
    save_snapshot(shard, tmp_path / "snap", model_id="m", dim=DIM)
    restored = new_shard()
    load_snapshot(restored, tmp_path / "snap", model_id="m", dim=DIM)
    (rec,) = restored.records([7])
    assert rec is not None and rec.started_at == naive and rec.started_at.tzinfo is None


def test_a_snapshot_into_a_shard_that_is_not_empty_is_refused(tmp_path: Path) -> None:
    shard, _ = built(2)
    save_snapshot(shard, tmp_path / "snap", model_id="m", dim=DIM)
    with pytest.raises(SnapshotError, match="empty shard"):
        load_snapshot(shard, tmp_path / "snap", model_id="m", dim=DIM)


def test_lexical_files_of_another_analyzer_are_refused(tmp_path: Path) -> None:
    shard, _ = built(3)
    save_snapshot(shard, tmp_path / "snap", model_id="m", dim=DIM)
    other = IndexShard(
        lexical=TantivyBM25Index(tokenizer="default"), vector=FaissVectorIndex(dim=DIM)
    )
    with pytest.raises(SnapshotError, match="another analyzer"):
        load_snapshot(other, tmp_path / "snap", model_id="m", dim=DIM)
    assert len(other) == 0 and other.seq == 0


def test_a_crash_before_the_rename_leaves_the_previous_snapshot(tmp_path: Path) -> None:
    shard, corpus = built(4)
    save_snapshot(shard, tmp_path / "snap", model_id="m", dim=DIM)
    # a half-written next snapshot, as a crash leaves it: the temporary sibling only
    tmp = tmp_path / "snap.tmp"
    (tmp / "records").mkdir(parents=True)
    (tmp / "vectors.npy").write_bytes(b"\x93NUMPY")
    restored = new_shard()
    load_snapshot(restored, tmp_path / "snap", model_id="m", dim=DIM)
    assert answers(restored, corpus) == answers(shard, corpus)
    save_snapshot(shard, tmp_path / "snap", model_id="m", dim=DIM)  # clears it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snap"]
    assert json.loads((tmp_path / "snap" / "manifest.json").read_text())["format"] == FORMAT


def test_only_the_lexical_directories_no_process_holds_are_removed(tmp_path: Path) -> None:
    held = TantivyBM25Index(work_dir=tmp_path)
    crashed = TantivyBM25Index(work_dir=tmp_path)
    left = next(p for p in tmp_path.iterdir() if p != held._root)
    crashed._cleanup.detach()  # as a crash would: nothing removes it
    crashed._in_use.close()  # and the lock dies with the process
    del crashed
    assert remove_stale(tmp_path) == 1
    assert [p.name for p in tmp_path.iterdir()] == [held._root.name] and not left.exists()


def test_records_read_the_same_when_few_are_kept(tmp_path: Path, monkeypatch) -> None:
    shard, corpus = built(5)
    want = answers(shard, corpus)
    monkeypatch.setattr("indexer.record_table.BUILT_RECORDS", 3)
    save_snapshot(shard, tmp_path / "snap", model_id="m", dim=DIM)
    restored = new_shard()
    load_snapshot(restored, tmp_path / "snap", model_id="m", dim=DIM)
    assert answers(restored, corpus) == answers(shard, corpus) == want
