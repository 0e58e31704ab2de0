"""The deadline-driven pipeline: stages are skipped (and named) when they do not fit."""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import Executor, Future
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from indexer.bm25_index import TantivyBM25Index
from indexer.errors import IndexTimeout
from indexer.faiss_index import FaissVectorIndex
from indexer.models import Filters, IndexDoc, Role
from indexer.shard import DocRecord, IndexShard
from query_service.deadline import Deadline
from query_service.errors import DeadlineExceeded
from query_service.searcher import Fusion, Searcher, SearchParams

DIM = 8


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class InlineExecutor(Executor):
    """Runs each task at once on the caller's thread, so fake-clock tests stay deterministic."""

    def submit(self, fn, /, *args, **kwargs):
        future: Future[object] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the future, as a pool does
            future.set_exception(exc)
        return future


class SlowEmbedder:
    """Advances the fake clock by ``cost`` seconds per query embedding."""

    dim = DIM
    model_id = "slow"

    def __init__(self, clock: FakeClock, cost: float) -> None:
        self.clock, self.cost = clock, cost

    def embed_batch(self, texts):
        return np.ones((len(texts), DIM), np.float32) / np.sqrt(DIM)

    def embed_query(self, text):
        self.clock.now += self.cost
        return np.ones(DIM, np.float32) / np.sqrt(DIM)


def shard(vector: FaissVectorIndex | None = None, filler: int = 0) -> IndexShard:
    if vector is None:
        vector = FaissVectorIndex(dim=DIM)
    s = IndexShard(lexical=TantivyBM25Index(), vector=vector)
    rng = np.random.default_rng(0)
    docs = []
    texts = ["the cat sat", "a dog barked", "the cat and the dog"]
    for i, text in enumerate(texts + [f"filler {j}" for j in range(filler)]):
        v = rng.standard_normal(DIM).astype(np.float32)
        docs.append(
            IndexDoc(
                uid=i + 1,
                tenant="t",
                user_id="u",
                conversation_id="c",
                speaker="s",
                role=Role.USER,
                started_at=float(i),
                text=text,
                embedding=v / np.linalg.norm(v),
            )
        )
    records = [
        DocRecord(
            uid=d.uid,
            tenant="t",
            id=f"u{d.uid}",
            conversation_id="c",
            user_id="u",
            turn=d.uid,
            speaker="s",
            role=Role.USER,
            text=d.text,
            started_at=datetime.fromtimestamp(d.started_at, UTC),
        )
        for d in docs
    ]
    s.load(docs, records, seq=3)
    return s


def test_slow_embedding_is_skipped_and_named() -> None:
    clock = FakeClock()
    searcher = Searcher(
        shard=shard(),
        embedder=SlowEmbedder(clock, 0.030),
        params=SearchParams(reserve_s=0.0),
        clock=clock,
        executor=InlineExecutor(),
    )
    f = Filters(tenant="t")
    # first query: the embed stage's prior estimate fits, runs (30 ms of fake time), is learnt
    r = searcher.search(
        "cat", k=3, mode="hybrid", filters=f, deadline=Deadline.after_ms(50, clock=clock)
    )
    assert "embed" in r.timings_ms and r.degraded == []
    # with a 10 ms budget the learnt embedding cost no longer fits: lexical only, and said so
    for _ in range(3):
        searcher._costs.observe("embed", 0.030)  # noqa: SLF001 - make the estimate certain
    r = searcher.search(
        "cat", k=3, mode="hybrid", filters=f, deadline=Deadline.after_ms(10, clock=clock)
    )
    assert "embed" in r.degraded and "dense" in r.degraded and "embed" not in r.timings_ms
    assert r.hits and r.hits[0].record.text == "the cat sat"
    # dense-only with nothing that fits is the one case without a result: 504
    with pytest.raises(DeadlineExceeded):
        searcher.search(
            "cat", k=3, mode="dense", filters=f, deadline=Deadline.after_ms(5, clock=clock)
        )


def test_a_skipped_stage_is_retried_later() -> None:
    clock = FakeClock()
    searcher = Searcher(
        shard=shard(),
        embedder=SlowEmbedder(clock, 0.001),
        params=SearchParams(reserve_s=0.0),
        clock=clock,
        executor=InlineExecutor(),
    )
    searcher._costs.observe("embed", 1.0)  # noqa: SLF001 - one pathological outlier
    searcher._costs.observe("embed", 1.0)  # noqa: SLF001
    f = Filters(tenant="t")
    outcomes = []
    for _ in range(30):
        r = searcher.search(
            "dog", k=2, mode="hybrid", filters=f, deadline=Deadline.after_ms(50, clock=clock)
        )
        outcomes.append("embed" in r.degraded)
    assert outcomes[0] and not outcomes[-1]  # skipped at first, back once the estimate decays


def test_stale_index_is_reported() -> None:
    clock = FakeClock()
    searcher = Searcher(
        shard=shard(),
        embedder=SlowEmbedder(clock, 0.001),
        params=SearchParams(),
        wait_for_seq=lambda seq, timeout: False,
        clock=clock,
        executor=InlineExecutor(),
    )
    r = searcher.search(
        "cat",
        k=2,
        mode="lexical",
        filters=Filters(tenant="t"),
        deadline=Deadline.after_ms(50, clock=clock),
        min_seq=10,
    )
    assert "stale_index" in r.degraded and r.hits


class SleepyEmbedder:
    """Really takes ``seconds`` per query (a stalled model, a busy core)."""

    dim = DIM
    model_id = "sleepy"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def embed_batch(self, texts):
        return np.ones((len(texts), DIM), np.float32) / np.sqrt(DIM)

    def embed_query(self, text):
        time.sleep(self.seconds)
        return np.ones(DIM, np.float32) / np.sqrt(DIM)


def test_a_stalled_embedding_is_abandoned_at_the_deadline() -> None:
    # the estimate says 1 ms, so the embedding starts; it then takes 400 ms of real time
    searcher = Searcher(
        shard=shard(), embedder=SleepyEmbedder(0.4), params=SearchParams(reserve_s=0.005)
    )
    try:
        t0 = time.perf_counter()
        r = searcher.search(
            "cat", k=3, mode="hybrid", filters=Filters(tenant="t"), deadline=Deadline.after_ms(50)
        )
        took = time.perf_counter() - t0
        assert took < 0.2  # answered near the 50 ms budget, not after the 400 ms embedding
        assert "embed" in r.degraded and "dense" in r.degraded
        assert r.hits and r.hits[0].record.text == "the cat sat"  # lexical still answered
    finally:
        searcher.close()


def test_a_partial_dense_scan_is_named() -> None:
    clock = FakeClock()

    class TickingClock:
        """Fake time that moves 1 ms whenever the vector index reads it."""

        def __call__(self) -> float:
            clock.now += 0.001
            return clock.now

    s = shard(FaissVectorIndex(dim=DIM, scan_chunk_rows=1, clock=TickingClock()), filler=37)
    searcher = Searcher(
        shard=s,
        embedder=SlowEmbedder(clock, 0.0),
        params=SearchParams(reserve_s=0.0),
        clock=clock,
        executor=InlineExecutor(),
    )
    r = searcher.search(
        "cat",
        k=3,
        mode="dense",
        filters=Filters(tenant="t"),
        deadline=Deadline.after_ms(10, clock=clock),
    )
    # 40 one-row chunks at 1 ms each cannot fit 10 ms: the scan stops, and says so (and the
    # budget is then spent, so neighbour spreading, the question prior and the context turns
    # are skipped too)
    assert r.degraded == ["dense_partial", "neighbours", "question_prior", "context"]
    assert len(r.hits) == 3


CONVERSATION = [
    ("ann", "what do you do for fun"),
    ("bob", "painting mostly, and some pottery"),
    ("ann", "the weather was awful today"),
    ("bob", "my car broke down again"),
]


def conversation_shard(turns: list[tuple[str, str]] = CONVERSATION) -> IndexShard:
    """One conversation: a question by ann, its answer by bob, then unrelated turns."""
    s = IndexShard(lexical=TantivyBM25Index(), vector=FaissVectorIndex(dim=DIM))
    docs, records = [], []
    for i, (speaker, text) in enumerate(turns):
        v = np.zeros(DIM, np.float32)
        v[i] = 1.0
        doc = IndexDoc(
            uid=i + 1, tenant="t", user_id="u", conversation_id="c", speaker=speaker,
            role=Role.USER, started_at=float(i), text=text, embedding=v,
        )  # fmt: skip
        docs.append(doc)
        records.append(
            DocRecord(
                uid=i + 1,
                tenant="t",
                id=f"u{i + 1}",
                conversation_id="c",
                user_id="u",
                turn=i,
                speaker=speaker,
                role=Role.USER,
                text=text,
                started_at=datetime.fromtimestamp(i, UTC),
            )  # fmt: skip
        )
    s.load(docs, records, seq=len(docs))
    return s


def ONLY_SPREADING(**params: Any) -> SearchParams:  # noqa: N802  (reads as a constant)
    """The other stages that could find the answer (the window key) or move it, off."""
    return SearchParams(**{"window_weight": 0.0, "question_weight": 1.0, **params})


def test_neighbour_spreading_finds_the_answer_and_respects_filters() -> None:
    s = conversation_shard()

    def search(params: SearchParams, f: Filters) -> list[str]:
        searcher = Searcher(shard=s, embedder=SlowEmbedder(FakeClock(), 0.0), params=params)
        try:
            r = searcher.search(
                "fun", k=3, mode="lexical", filters=f, deadline=Deadline.after_ms(1000)
            )
            return [h.record.text for h in r.hits]
        finally:
            searcher.close()

    everyone = Filters(tenant="t")
    # without spreading only the question has the word
    assert search(ONLY_SPREADING(neighbour_weight=0.0), everyone) == ["what do you do for fun"]
    # with it, the answer one turn later (and the turn after it, two away) come along
    spread = search(ONLY_SPREADING(neighbour_weight=0.5, neighbour_window=2), everyone)
    assert spread[:2] == ["what do you do for fun", "painting mostly, and some pottery"]
    assert spread[2] == "the weather was awful today"
    # a neighbour outside the filters is never added: bob's answer is out of scope
    anns = search(
        ONLY_SPREADING(neighbour_weight=0.5, neighbour_window=2),
        Filters(tenant="t", speakers=("ann",)),
    )
    assert anns == ["what do you do for fun", "the weather was awful today"]


def test_the_window_key_finds_the_answer_without_spreading() -> None:
    s = conversation_shard()
    searcher = Searcher(
        shard=s,
        embedder=SlowEmbedder(FakeClock(), 0.0),
        params=SearchParams(neighbour_weight=0.0, question_weight=1.0, window_weight=0.5),
    )
    try:
        r = searcher.search(
            "fun",
            k=3,
            mode="lexical",
            filters=Filters(tenant="t"),
            deadline=Deadline.after_ms(1000),
        )
    finally:
        searcher.close()
    # min-max within each key: turn key {q: 1}, window key {q: 1, answer: 0 (the lowest)};
    # 0.5 * 1 + 0.5 * 1 = 1 for the question, 0.5 * 0 + 0.5 * 0 = 0 for the answer
    assert [h.record.text for h in r.hits] == [
        "what do you do for fun",
        "painting mostly, and some pottery",
    ]
    assert r.hits[0].score == pytest.approx(1.0)


class PointEmbedder:
    """Embeds every query as the unit vector of dimension ``axis``; records what it embeds."""

    dim = DIM
    model_id = "point"

    def __init__(self, axis: int) -> None:
        self.axis = axis
        self.seen: list[str] = []

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self.embed_query(t) for t in texts])

    def embed_query(self, text: str) -> np.ndarray:
        self.seen.append(text)
        v = np.zeros(DIM, np.float32)
        v[self.axis] = 1.0
        return v


def test_the_dense_search_keeps_to_the_one_speaker_a_query_names() -> None:
    s = conversation_shard()  # turn i's vector is the unit vector of dimension i

    # the query embeds as turn 1 (bob's answer): the closest turn overall is bob's
    def dense(query: str, scope: bool, filters: Filters | None = None) -> list[str]:
        searcher = Searcher(
            shard=s,
            embedder=PointEmbedder(1),
            params=SearchParams(dense_speaker_scope=scope, neighbour_weight=0.0),
        )
        try:
            r = searcher.search(
                query, k=4, mode="dense", filters=filters or Filters(tenant="t"),
                deadline=Deadline.after_ms(1000),
            )  # fmt: skip
            return [h.record.speaker for h in r.hits]
        finally:
            searcher.close()

    assert dense("what does Ann like", scope=False)[0] == "bob"
    assert set(dense("what does Ann like", scope=True)) == {"ann"}  # only ann's turns
    assert dense("what do ann and bob like", scope=True)[0] == "bob"  # two names: no scope
    assert dense("what do they like", scope=True)[0] == "bob"  # no name: no scope
    # a name the filters exclude does not override them
    only_bob = Filters(tenant="t", speakers=("bob",))
    assert set(dense("what does Ann like", scope=True, filters=only_bob)) == {"bob"}


def test_the_question_prior_lowers_questions_after_spreading() -> None:
    asked = [("ann", "what do you do for fun?"), *CONVERSATION[1:]]

    def texts(question_weight: float, turns: list[tuple[str, str]]) -> list[str]:
        searcher = Searcher(
            shard=conversation_shard(turns),
            embedder=SlowEmbedder(FakeClock(), 0.0),
            params=ONLY_SPREADING(
                neighbour_weight=0.8, neighbour_window=1, question_weight=question_weight
            ),
        )
        try:
            r = searcher.search(
                "fun", k=2, mode="lexical", filters=Filters(tenant="t"),
                deadline=Deadline.after_ms(1000),
            )  # fmt: skip
            return [h.record.text for h in r.hits]
        finally:
            searcher.close()

    # the question (score 1) passes 0.8 to its answer; without the prior it stays on top
    assert texts(1.0, asked) == ["what do you do for fun?", "painting mostly, and some pottery"]
    # with it, 1 * 0.5 = 0.5 < 0.8: the answer comes first (spreading used the undamped 1)
    assert texts(0.5, asked) == ["painting mostly, and some pottery", "what do you do for fun?"]
    # without the "?" it is not a question, and nothing moves
    assert texts(0.5, CONVERSATION) == [
        "what do you do for fun",
        "painting mostly, and some pottery",
    ]


@pytest.mark.parametrize(
    ("first_person", "query", "embedded"),
    [
        (True, "what does Ann's dog like", "what does my dog like"),
        (False, "what does Ann's dog like", "what does Ann's dog like"),
        (True, "what do Ann and Bob like", "what do Ann and Bob like"),  # no scope, no rewrite
    ],
)
def test_a_scoped_dense_query_is_embedded_in_the_first_person(
    first_person: bool, query: str, embedded: str
) -> None:
    embedder = PointEmbedder(1)
    searcher = Searcher(
        shard=conversation_shard(),
        embedder=embedder,
        params=SearchParams(dense_first_person=first_person),
    )
    try:
        r = searcher.search(
            query, k=2, mode="hybrid", filters=Filters(tenant="t"),
            deadline=Deadline.after_ms(1000),
        )  # fmt: skip
    finally:
        searcher.close()
    assert embedder.seen == [embedded]
    assert r.hits  # BM25 read the query as written: "ann" still routes to the speaker field


def test_the_cross_encoder_reorders_the_head(tmp_path: Path) -> None:
    from indexer.cross_encoder import LocalCrossEncoder
    from tests.tiny_cross_encoder import build_tiny_cross_encoder, reference_scores

    model_dir = build_tiny_cross_encoder(tmp_path / "ce")
    query = "what do you do for fun, the weather, my car"
    params = ONLY_SPREADING(neighbour_weight=0.0, cross_encoder_top=3)

    def texts(cross_encoder: LocalCrossEncoder | None) -> tuple[list[str], list[str]]:
        searcher = Searcher(
            shard=conversation_shard(),
            embedder=SlowEmbedder(FakeClock(), 0.0),
            params=params,
            cross_encoder=cross_encoder,
        )
        try:
            r = searcher.search(
                query, k=4, mode="lexical", filters=Filters(tenant="t"),
                deadline=Deadline.after_ms(5000),
            )  # fmt: skip
            return [h.record.text for h in r.hits], r.degraded
        finally:
            searcher.close()

    first, _ = texts(None)
    assert len(first) == 3  # three turns share words with the query
    reranked, degraded = texts(LocalCrossEncoder(model_dir))
    logits = reference_scores(model_dir, query, first)
    assert reranked == [first[i] for i in np.argsort(-logits, kind="stable")]
    assert reranked != first  # the model's order differs from BM25's here: it did something
    assert degraded == []


class SleepyCrossEncoder:
    model_id = "sleepy"

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        time.sleep(1.0)
        return np.arange(len(texts), dtype=np.float32)


def test_a_slow_cross_encoder_is_abandoned_at_the_deadline() -> None:
    searcher = Searcher(
        shard=conversation_shard(),
        embedder=SlowEmbedder(FakeClock(), 0.0),
        params=ONLY_SPREADING(neighbour_weight=0.0),
        cross_encoder=SleepyCrossEncoder(),
    )
    try:
        t0 = time.perf_counter()
        r = searcher.search(
            "what do you do for fun, the weather, my car", k=4, mode="lexical",
            filters=Filters(tenant="t"), deadline=Deadline.after_ms(150),
        )  # fmt: skip
        took = time.perf_counter() - t0
    finally:
        searcher.close()
    assert "cross_encoder" in r.degraded
    assert len(r.hits) == 3  # the first-stage ranking is still answered
    assert took < 0.8  # not the model's 1 s


def dated_shard(turns: list[tuple[str, datetime]]) -> IndexShard:
    s = IndexShard(lexical=TantivyBM25Index(), vector=FaissVectorIndex(dim=DIM))
    docs, records = [], []
    for i, (text, at) in enumerate(turns):
        v = np.zeros(DIM, np.float32)
        v[i % DIM] = 1.0
        rec = DocRecord(
            uid=i + 1, tenant="t", id=f"u{i + 1}", conversation_id=f"c{i}", user_id="u",
            turn=0, speaker="ann", role=Role.USER, text=text, started_at=at,
        )  # fmt: skip
        records.append(rec)
        docs.append(rec.index_doc(v))
    s.load(docs, records, seq=len(docs))
    return s


COOKING = [
    ("I cooked a curry, cooked it twice, cooked so much", datetime(2026, 4, 20, 18, tzinfo=UTC)),
    ("I cooked pasta with the kids", datetime(2026, 5, 6, 19, tzinfo=UTC)),
    ("I cooked rice", datetime(2026, 5, 13, 12, tzinfo=UTC)),
]
# a Wednesday: "last week" is Monday 4 May to Monday 11 May
ASKED = datetime(2026, 5, 13, 15, tzinfo=UTC)


def cooked(params: SearchParams, query: str, filters: Filters, now: datetime | None) -> list[str]:
    searcher = Searcher(
        shard=dated_shard(COOKING),
        embedder=SlowEmbedder(FakeClock(), 0.0),
        params=params,
        now=lambda: ASKED,
    )
    try:
        r = searcher.search(
            query, k=3, mode="hybrid", filters=filters, deadline=Deadline.after_ms(1000),
            now=now,
        )  # fmt: skip
        return [h.record.text.split(",")[0] for h in r.hits]
    finally:
        searcher.close()


def test_a_time_in_the_query_prefers_turns_from_then() -> None:
    off = SearchParams(temporal_weight=1.0, neighbour_weight=0.0)
    on = SearchParams(temporal_weight=0.3, neighbour_weight=0.0)
    everyone = Filters(tenant="t")
    q = "what did I cook last week"
    # BM25 likes the curry (three "cooked"), from April
    assert cooked(off, q, everyone, None)[0] == "I cooked a curry"
    # last week (4-11 May) holds only the pasta: the others' scores are cut to 0.3
    assert cooked(on, q, everyone, None)[0] == "I cooked pasta with the kids"
    # the reference time moves "last week": asked on 29 April, it is 20-27 April: the curry
    assert cooked(on, q, everyone, datetime(2026, 4, 29, tzinfo=UTC))[0] == "I cooked a curry"
    # no time in the query: nothing changes
    assert cooked(on, "what did I cook", everyone, None) == cooked(
        off, "what did I cook", everyone, None
    )
    # filters that exclude the whole range win: the stage stands aside
    april = Filters(tenant="t", until=datetime(2026, 4, 30, tzinfo=UTC).timestamp())
    assert cooked(on, q, april, None) == ["I cooked a curry"]


def test_a_min_seq_wait_ends_when_its_deadline_is_abandoned() -> None:
    clock = FakeClock()
    waits: list[float] = []
    deadline = Deadline.after_ms(2000, clock=clock)

    def wait_for_seq(seq: int, timeout: float) -> bool:
        waits.append(timeout)
        clock.now += timeout
        if len(waits) == 3:
            deadline.abandon()  # the caller hangs up during the third slice
        return False

    searcher = Searcher(
        shard=shard(),
        embedder=SlowEmbedder(clock, 0.001),
        params=SearchParams(),
        wait_for_seq=wait_for_seq,
        clock=clock,
        executor=InlineExecutor(),
    )
    with pytest.raises(DeadlineExceeded):  # nothing is left for any stage: no result at all
        searcher.search(
            "cat", k=2, mode="lexical", filters=Filters(tenant="t"), deadline=deadline, min_seq=10
        )
    assert len(waits) == 3 and max(waits) <= 0.02  # short slices, none after the hang-up


class RemoteView:
    """A real shard read as a remote tier is (``remote``: the searcher overlaps its
    retrievals), with calls that can be made to time out as a remote engine's do."""

    remote = True

    def __init__(self, inner: IndexShard, *, timing_out: Sequence[str] = ()) -> None:
        self._inner = inner
        self._timing_out = set(timing_out)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name not in self._timing_out:
            return attr

        def timed_out(*args: Any, **kwargs: Any) -> Any:
            raise IndexTimeout(f"{name} timed out")

        return timed_out


def test_a_remote_tier_answers_as_the_same_shard_read_in_process() -> None:
    """The overlapped retrievals (BM25 on both keys and dense at once) rank as the
    sequential ones: the same hits, scores and context."""
    inner = conversation_shard()
    params = SearchParams(window_weight=0.3)
    f = Filters(tenant="t")
    local = Searcher(shard=inner, embedder=PointEmbedder(0), params=params)
    remote = Searcher(shard=RemoteView(inner), embedder=PointEmbedder(0), params=params)
    for query in ("painting and pottery", "the weather today", "what do you do for fun"):
        for mode in ("hybrid", "lexical", "dense"):
            a, b = (
                s.search(query, k=5, mode=mode, filters=f, deadline=Deadline.after_ms(1000))
                for s in (local, remote)
            )
            assert [(h.record.uid, h.score) for h in a.hits] == [
                (h.record.uid, h.score) for h in b.hits
            ]
            assert [[c.uid for c in h.context] for h in a.hits] == [
                [c.uid for c in h.context] for h in b.hits
            ]
            assert a.degraded == b.degraded == []
    local.close()
    remote.close()


def test_a_remote_call_that_times_out_degrades_its_stage_only() -> None:
    inner = conversation_shard()
    f = Filters(tenant="t")

    def search(timing_out: Sequence[str]) -> Any:
        s = Searcher(
            shard=RemoteView(inner, timing_out=timing_out),
            embedder=PointEmbedder(0),
            params=SearchParams(),
        )
        try:
            return s.search(
                "painting", k=3, mode="hybrid", filters=f, deadline=Deadline.after_ms(1000)
            )
        finally:
            s.close()

    r = search(["search_dense"])
    assert r.hits and "dense" in r.degraded and "lexical" not in r.degraded
    r = search(["context_many"])
    assert r.hits and "context" in r.degraded and "neighbours" in r.degraded
    assert all(h.context == [] for h in r.hits)
    with pytest.raises(DeadlineExceeded):  # nothing retrieved at all: said, not an empty list
        search(["search_dense", "search_lexical"])


def test_server_fusion_on_a_tier_that_cannot_fuses_here() -> None:
    """``server-rrf`` on the in-process tier (no ``search_fused``) ranks as ``rrf``: a
    setting that suits Milvus never breaks another tier."""
    inner = conversation_shard()
    f = Filters(tenant="t")
    pairs: list[tuple[Fusion, Fusion]] = [("server-rrf", "rrf")]
    for server, here in pairs:
        a, b = (
            Searcher(shard=inner, embedder=PointEmbedder(1), params=SearchParams(fusion=fusion))
            for fusion in (server, here)
        )
        for query in ("painting and pottery", "the weather today"):
            got, want = (
                s.search(query, k=4, mode="hybrid", filters=f, deadline=Deadline.after_ms(1000))
                for s in (a, b)
            )
            assert [(h.record.uid, h.score) for h in got.hits] == [
                (h.record.uid, h.score) for h in want.hits
            ]
        a.close()
        b.close()
