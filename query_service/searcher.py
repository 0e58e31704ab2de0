"""`Searcher`: the query pipeline under one latency budget.

    read-your-writes wait ─▶ lexical (turn + window keys) ─▶ embed query ─▶ dense
                          ─▶ fuse ─▶ neighbours ─▶ question prior ─▶ temporal
                          ─▶ cross-encoder (optional)
                          ─▶ rerank ─▶ context

Each stage is timed. Before a stage runs, the searcher compares what is left of the deadline
(less a reserve for serialisation) with that stage's recent cost (an exponentially weighted
moving average); a stage that would not fit is skipped and named in ``degraded``.

The query embedding runs on an executor, and the caller waits for it no longer than the
deadline: a slow embedding is abandoned (named ``embed`` in ``degraded``) rather than allowed
to overrun. (It is not overlapped with the lexical search: on 2 cores the embedding's own two
threads and a concurrent BM25 search only slowed each other down.) The dense scan looks at
the clock between chunks and stops when time is up (``dense_partial``). The answer is
whatever the stages that ran produced: a 504 happens only when none could run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Literal

import numpy as np
import numpy.typing as npt

from indexer.errors import IndexTimeout
from indexer.models import Filters, LexicalOptions
from indexer.protocols import CrossEncoder, Embedder
from indexer.records import DocRecord
from indexer.tier import HybridFusion, IndexTier, ServerFusion
from query_service.deadline import Deadline
from query_service.errors import DeadlineExceeded
from query_service.query_analysis import first_person, named_speakers
from query_service.stages import StageCosts, StageObserver, StageRunner
from query_service.temporal import TimeRange, time_range
from ranking import convex, damp, dedupe, mmr, rerank_head, rrf, spread_to_neighbours
from ranking.hits import Hits

Mode = Literal["hybrid", "lexical", "dense"]

#: a ``min_seq`` wait looks at its deadline this often, to notice an abandoned call
WAIT_SLICE_S = 0.02


Fusion = Literal["rrf", "convex", "server-rrf"]


@dataclass(frozen=True, slots=True)
class SearchParams:
    """The ranking configuration. Defaults are the best measured on LoCoMo (docs/EVAL.md)."""

    #: rrf / convex: fused here; server-rrf: by a tier that fuses
    #: server-side (``ServerFusion``: Milvus, RRF with ``rrf_k``); on any other tier, here
    #: (rrf). Server-side weighted fusion exists at the tier (``HybridFusion``) but is not
    #: offered: with Milvus's score normalisation it scored LoCoMo Recall@10 24.3 (docs/SCALING.md)
    fusion: Fusion = "convex"
    rrf_k: int = 60
    #: convex fusion: the lexical run's weight (the dense run gets 1 - this)
    lexical_weight: float = 0.6
    candidates: int = 100
    context_turns: int = 2
    dedupe_threshold: float | None = None
    reserve_s: float = 0.003
    #: lexical: leave English function words out of the query (``indexer.stopwords``)
    lexical_stopwords: bool = True
    #: lexical: > 0 routes query terms that name a speaker to the speaker field, this weight
    speaker_weight: float = 1.0
    #: lexical: > 0 also searches the window key (each turn with the turn before it) and
    #: gives that run this weight against the turn's own text (convex, min-max)
    window_weight: float = 0.5
    #: > 0 spreads this share of a hit's score to the turns around it (``ranking.neighbours``)
    neighbour_weight: float = 0.4
    #: how many turns on each side receive a share
    neighbour_window: int = 2
    #: how many of the best fused hits spread
    neighbour_top: int = 10
    #: MMR diversification over the top 3k (None: off); lambda in [0, 1], 1 = relevance only
    mmr_lambda: float | None = None
    #: dense: when the query names exactly one speaker of the scope, search only their turns
    dense_speaker_scope: bool = True
    #: dense, when scoped to a named speaker: embed the query in their words ("I", "my")
    dense_first_person: bool = True
    #: the scores of turns that are questions are multiplied by this (1: off)
    question_weight: float = 0.7
    #: a query that names a time ("last week", "in May"; ``query_service.temporal``): the
    #: dense search keeps to that range, and hits outside it have their score multiplied by
    #: this (1: off)
    temporal_weight: float = 0.5
    #: with a cross-encoder configured: how many of the best hits it re-orders
    cross_encoder_top: int = 20
    #: ... and its say against the first-stage score in that head (``ranking.rerank_head``)
    cross_encoder_weight: float = 1.0


@dataclass(frozen=True, slots=True)
class Hit:
    record: DocRecord
    score: float
    context: list[DocRecord]


@dataclass
class SearchResult:
    hits: list[Hit]
    timings_ms: dict[str, float] = field(default_factory=dict)
    degraded: list[str] = field(default_factory=list)
    index_seq: int = 0


class Searcher:
    def __init__(
        self,
        *,
        shard: IndexTier,
        embedder: Embedder,
        params: SearchParams,
        wait_for_seq: Callable[[int, float], bool] | None = None,
        clock: Callable[[], float] = time.perf_counter,
        executor: Executor | None = None,
        cross_encoder: CrossEncoder | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        observer: StageObserver | None = None,
    ) -> None:
        """``executor`` runs query embeddings and cross-encoder scoring (default: a small
        thread pool this owns). ``cross_encoder`` (optional) re-orders the best hits. ``now``
        is the reference time of queries that name a time ("last week"), unless a search
        passes its own. ``observer`` hears of every stage run or skipped (metrics)."""
        self._owns_executor = executor is None
        self._executor = (
            executor
            if executor is not None
            else ThreadPoolExecutor(max_workers=4, thread_name_prefix="convmem-embed")
        )
        self._shard = shard
        # reads of a remote tier overlap on these threads (a round trip each)
        self._tier_pool = (
            ThreadPoolExecutor(max_workers=8, thread_name_prefix="convmem-tier")
            if shard.remote
            else None
        )
        self._embedder = embedder
        self._params = params
        self._wait_for_seq = wait_for_seq
        self._clock = clock
        self._cross_encoder = cross_encoder
        self._now = now
        self._observer = observer
        self._costs = StageCosts(
            {
                "lexical": 0.001,
                "embed": 0.002,
                "dense": 0.002,
                "fuse": 0.0002,
                "rerank": 0.001,
                "cross_encoder": 0.02,
            }
        )

    def observe(self, observer: StageObserver) -> None:
        """Report every stage run or skipped to ``observer`` from now on (metrics)."""
        self._observer = observer

    def close(self) -> None:
        """Release the embedding threads (if this searcher made them)."""
        if self._owns_executor:
            self._executor.shutdown(wait=False, cancel_futures=True)
        if self._tier_pool is not None:
            self._tier_pool.shutdown(wait=False, cancel_futures=True)

    def _wait_for(self, min_seq: int, until: Deadline) -> bool:
        """Wait for the index to cover ``min_seq`` until ``until``, in short slices so that
        a caller who gives up (an abandoned deadline) frees this thread within one slice."""
        wait = self._wait_for_seq
        if wait is None:
            return False
        # bounded by slice count, not just by the clock: a wait that returns early must not spin
        for _ in range(math.ceil(until.remaining() / WAIT_SLICE_S)):
            left = until.remaining()
            if left <= 0:
                break
            if wait(min_seq, min(left, WAIT_SLICE_S)):
                return True
        return False

    def search(
        self,
        query: str,
        *,
        k: int,
        mode: Mode,
        filters: Filters,
        deadline: Deadline,
        min_seq: int | None = None,
        now: datetime | None = None,
    ) -> SearchResult:
        """``now`` (with a time zone) is when the query is asked, for "yesterday" and the
        like; default: the searcher's clock, in UTC."""
        p = self._params
        result = SearchResult(hits=[])
        usable = deadline.slice(max(0.0, deadline.remaining() - p.reserve_s))
        stages = StageRunner(
            costs=self._costs,
            usable=usable,
            clock=self._clock,
            timings_ms=result.timings_ms,
            degraded=result.degraded,
            observer=self._observer,
        )
        if min_seq is not None and self._shard.seq < min_seq:
            t0 = self._clock()
            waited = self._wait_for(min_seq, usable.slice(usable.remaining() / 2))
            stages.record("wait", self._clock() - t0, learn=False)
            if not waited:
                result.degraded.append("stale_index")

        n = max(k, p.candidates)
        runs: list[Hits] = []
        when = self._time_range(query, filters, now)
        left: Mode | None = mode  # the retrievals still to run here
        if (
            mode == "hybrid"
            and p.fusion.startswith("server")
            and isinstance(self._shard, ServerFusion)
        ):
            on_tier = self._fused_on_tier(query, filters, when, n, stages)
            if on_tier is not None:
                runs.append(on_tier)
                left = None  # both retrievals done and fused by the tier
            else:
                left = "lexical"  # the query embedding did not fit: BM25 alone
        dense_future: Future[Hits | None] | None = None
        if left in ("hybrid", "dense") and self._tier_pool is not None:
            # a remote tier: the dense search waits on the engine while BM25 does too
            dense_future = self._tier_pool.submit(self._dense, query, filters, when, n, stages)
        if left in ("hybrid", "lexical"):
            lex = stages.run("lexical", lambda: self._lexical(query, n, filters, usable))
            if lex is not None:
                runs.append(lex)
        if left in ("hybrid", "dense"):
            dense = (
                self._dense(query, filters, when, n, stages)
                if dense_future is None
                else self._await_dense(dense_future, stages)
            )
            if dense is not None:
                runs.append(dense)
                if not dense.exhaustive:
                    result.degraded.append("dense_partial")
        if not runs:
            if not result.degraded:
                return result  # nothing asked for: cannot happen with a valid mode
            raise DeadlineExceeded(
                f"no retriever fitted in the budget (skipped: {', '.join(result.degraded)})"
            )

        fused = runs[0]
        if len(runs) > 1:
            joined = stages.run("fuse", lambda: self._fuse(runs))
            fused = fused if joined is None else joined
        if p.neighbour_weight > 0 and len(fused):
            spread = stages.run("neighbours", lambda: self._spread(fused, filters))
            fused = fused if spread is None else spread
        if p.question_weight < 1 and len(fused):
            damped = stages.run("question_prior", lambda: self._damp_questions(fused))
            fused = fused if damped is None else damped
        if when is not None and len(fused):
            timed = stages.run("temporal", lambda: self._damp_outside(fused, when))
            fused = fused if timed is None else timed
        if self._cross_encoder is not None and len(fused) > 1:
            fused = self._cross_rerank(query, fused, stages)
        if (p.dedupe_threshold is not None or p.mmr_lambda is not None) and len(fused) > 1:
            head = fused
            reranked = stages.run("rerank", lambda: self._rerank(head, k))
            fused = fused if reranked is None else reranked
        fused = fused.top(k)
        self._hydrate(fused, result, deadline, stages)
        result.index_seq = self._shard.seq
        return result

    def _fused_on_tier(
        self, query: str, filters: Filters, when: TimeRange | None, n: int, stages: StageRunner
    ) -> Hits | None:
        """BM25 and dense in one request to a tier that fuses them (``ServerFusion``), with
        the filters and query text each would have here; None if the embedding is skipped."""
        p = self._params
        tier = self._shard
        assert isinstance(tier, ServerFusion)
        embedded = self._query_vector(query, filters, when, stages, then="hybrid")
        if embedded is None:
            return None
        qvec, dense_filters = embedded
        fusion = HybridFusion(
            kind="rrf",
            rrf_k=p.rrf_k,
            weights=(
                p.lexical_weight * (1.0 - p.window_weight),
                p.lexical_weight * p.window_weight,
                1.0 - p.lexical_weight,
            ),
        )
        usable = stages.usable
        options = LexicalOptions(p.lexical_stopwords, p.speaker_weight, "turn")
        return stages.run(
            "hybrid",
            lambda: tier.search_fused(
                query,
                qvec,
                n,
                filters=filters,
                dense_filters=dense_filters,
                timeout_s=usable.remaining(),
                options=options,
                fusion=fusion,
            ),
        )

    def _query_vector(
        self,
        query: str,
        filters: Filters,
        when: TimeRange | None,
        stages: StageRunner,
        *,
        then: str,
    ) -> tuple[npt.NDArray[np.float32], Filters] | None:
        """The dense query's vector (``_dense_scope``'s text, embedded if it fits; else None
        with ``then``, the stage that needed it, degraded too) and the dense filters."""
        dense_filters, dense_query = self._dense_scope(query, filters)
        if when is not None:
            dense_filters = replace(dense_filters, since=when.since, until=when.until)
        qvec = stages.run_on(
            self._executor,
            "embed",
            lambda: self._embedder.embed_query(dense_query),
            also=(then,),
        )
        return None if qvec is None else (qvec, dense_filters)

    def _dense(
        self, query: str, filters: Filters, when: TimeRange | None, n: int, stages: StageRunner
    ) -> Hits | None:
        """The query embedding, then the dense search (each skipped if it does not fit)."""
        embedded = self._query_vector(query, filters, when, stages, then="dense")
        if embedded is None:
            return None
        qvec, dense_filters = embedded
        usable = stages.usable
        return stages.run(
            "dense",
            lambda: self._shard.search_dense(
                qvec, n, filters=dense_filters, timeout_s=usable.remaining()
            ),
        )

    def _await_dense(self, future: Future[Hits | None], stages: StageRunner) -> Hits | None:
        """The overlapped dense search's hits, waited for no longer than the deadline."""
        try:
            return future.result(timeout=max(0.0, stages.usable.remaining()))
        except FutureTimeout:
            future.cancel()
            stages.skip("dense")
            return None

    def _lexical(self, query: str, n: int, filters: Filters, usable: Deadline) -> Hits:
        """BM25 over the turns; with ``window_weight`` > 0, fused with BM25 over the windows."""
        p = self._params
        keys: list[Literal["turn", "window"]] = ["turn"]
        if p.window_weight > 0:
            keys.append("window")

        def one(key: Literal["turn", "window"]) -> Hits:
            return self._shard.search_lexical(
                query,
                n,
                filters=filters,
                timeout_s=usable.remaining(),
                options=LexicalOptions(p.lexical_stopwords, p.speaker_weight, key),
            )

        if self._tier_pool is not None and len(keys) > 1:  # a remote tier: both at once
            later = self._tier_pool.submit(one, keys[1])
            first = one(keys[0])
            try:
                runs = [first, later.result(timeout=max(0.0, usable.remaining()))]
            except FutureTimeout:  # out of time: the turn key's hits alone
                later.cancel()
                return first
        else:
            runs = [one(key) for key in keys]
        if len(runs) == 1:
            return runs[0]
        return convex(runs, weights=[1.0 - p.window_weight, p.window_weight], limit=n)

    def _dense_scope(self, query: str, filters: Filters) -> tuple[Filters, str]:
        """The dense search's filters and query text (``dense_speaker_scope``).

        The dense counterpart of BM25's speaker routing: "What does Melanie do to relax?"
        embeds close to every turn about relaxing, whoever said it, so the dense search looks
        only at Melanie's turns, and (``dense_first_person``) embeds the question as she would
        put it, "What do I do to relax?": her own turns say "I", and the turns that say
        "Melanie" are the other speakers'. A query naming two speakers (or none) is left as
        it is, as is one whose named speaker the filters exclude.
        """
        p = self._params
        if not p.dense_speaker_scope:
            return filters, query
        names = named_speakers(query, self._shard.speakers(filters.tenant, filters.user_id))
        if len(names) != 1 or (filters.speakers and names[0] not in filters.speakers):
            return filters, query
        text = first_person(query, names[0]) if p.dense_first_person else query
        return replace(filters, speakers=names), text

    def _time_range(self, query: str, filters: Filters, now: datetime | None) -> TimeRange | None:
        """The query's own time range, within the filters' ``since``/``until``; None if the
        query names no time, the stage is off, or the two do not overlap (the filters win)."""
        if self._params.temporal_weight >= 1:
            return None
        found = time_range(query, now if now is not None else self._now())
        if found is None:
            return None
        since = found.since if filters.since is None else max(found.since, filters.since)
        # `Filters.until` is inclusive, a TimeRange's end exclusive: the stricter one wins
        until = found.until if filters.until is None else min(found.until, filters.until)
        if since >= until:
            return None
        return TimeRange(since, until, found.phrase)

    def _damp_outside(self, hits: Hits, when: TimeRange) -> Hits:
        mask = [
            rec is None or not when.contains(rec.started_at.timestamp())
            for rec in self._shard.records(hits.ids)
        ]
        return damp(_floored(hits), mask, factor=self._params.temporal_weight)

    def _damp_questions(self, hits: Hits) -> Hits:
        mask = self._shard.questions(hits.ids)
        return damp(_floored(hits), mask, factor=self._params.question_weight)

    def _fuse(self, runs: list[Hits]) -> Hits:
        p = self._params
        if p.fusion in ("rrf", "server-rrf"):
            return rrf(runs, k=p.rrf_k)
        return convex(runs, weights=[p.lexical_weight, 1.0 - p.lexical_weight])

    def _spread(self, hits: Hits, filters: Filters) -> Hits:
        p = self._params
        w = p.neighbour_window
        around = self._shard.context_many(
            [int(u) for u in hits.ids[: p.neighbour_top]], before=w, after=w
        )
        near = {
            int(uid): [
                r.uid
                for r in around.get(int(uid), [])
                if filters.admits(
                    tenant=r.tenant,
                    user_id=r.user_id,
                    conversation_id=r.conversation_id,
                    speaker=r.speaker,
                    role=r.role,
                    started_at=r.started_at.timestamp(),
                )
            ]
            for uid in hits.ids[: p.neighbour_top]
        }
        return spread_to_neighbours(_floored(hits), near, weight=p.neighbour_weight)

    def _cross_rerank(self, query: str, hits: Hits, stages: StageRunner) -> Hits:
        """Re-order the best ``cross_encoder_top`` hits by the cross-encoder, if it fits.

        It runs on the executor and is awaited no longer than the deadline, like the query
        embedding: a slow model is abandoned (``cross_encoder`` in ``degraded``), not waited on.
        """
        p = self._params
        encoder = self._cross_encoder
        assert encoder is not None
        head = hits.top(p.cross_encoder_top)
        texts = [rec.text if rec is not None else "" for rec in self._shard.records(head.ids)]
        scores = stages.run_on(self._executor, "cross_encoder", lambda: encoder.score(query, texts))
        return hits if scores is None else rerank_head(hits, scores, weight=p.cross_encoder_weight)

    def _rerank(self, hits: Hits, k: int) -> Hits:
        """Dedupe near-duplicates and/or MMR-diversify the top ``3k`` (off by default)."""
        p = self._params
        head, vectors = self._shard.live_vectors(hits.top(3 * k))
        out = head
        if len(head) and p.dedupe_threshold is not None:
            out = dedupe(head, vectors, threshold=p.dedupe_threshold)
            vectors = vectors[np.isin(head.ids, out.ids)] if len(out) < len(head) else vectors
        if len(out) and p.mmr_lambda is not None:
            out = mmr(out, vectors, lambda_=p.mmr_lambda, limit=len(out))
        return out

    def _hydrate(
        self, hits: Hits, result: SearchResult, deadline: Deadline, stages: StageRunner
    ) -> None:
        """Records and their surrounding turns; past the deadline, the rest go without."""
        t0 = self._clock()
        turns = self._params.context_turns
        records = self._shard.records(hits.ids)
        live = [int(uid) for uid, rec in zip(hits.ids, records, strict=True) if rec is not None]
        around: dict[int, list[DocRecord]] = {}
        if turns and live:
            if deadline.expired():
                stages.skip("context")
            else:
                try:
                    around = self._shard.context_many(live, before=turns, after=turns)
                except IndexTimeout:  # a remote tier out of time: the hits, without context
                    stages.skip("context")
        for uid, score, rec in zip(hits.ids, hits.scores, records, strict=True):
            if rec is None:  # deleted between retrieval and hydration
                continue
            result.hits.append(
                Hit(record=rec, score=float(score), context=around.get(int(uid), []))
            )
        stages.record("context", self._clock() - t0, learn=False)


def _floored(hits: Hits) -> Hits:
    """``hits`` with negative scores raised to 0: cosine scores (dense-only mode) can be
    negative, and spreading and damping need scores >= 0."""
    return Hits(hits.ids, np.maximum(hits.scores, 0.0), hits.exhaustive)
