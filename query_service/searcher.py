"""`Searcher`: the query pipeline under one latency budget.

    read-your-writes wait ─▶ lexical ─▶ embed query ─▶ dense ─▶ fuse ─▶ rerank ─▶ context

Each stage is timed. Before a stage runs, the searcher compares what is left of the deadline
(less a reserve for serialisation) with that stage's recent cost (an exponentially weighted
moving average); a stage that would not fit is skipped and named in ``degraded``. The answer
is whatever the stages that ran produced: a 504 happens only when none could run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import numpy as np
import numpy.typing as npt

from indexer.models import Filters
from indexer.protocols import Embedder
from indexer.shard import DocRecord, IndexShard
from query_service.deadline import Deadline
from query_service.errors import DeadlineExceeded
from ranking import convex, dedupe, rrf
from ranking.hits import Hits

Mode = Literal["hybrid", "lexical", "dense"]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SearchParams:
    fusion: Literal["rrf", "convex"] = "rrf"
    rrf_k: int = 60
    lexical_weight: float = 0.5
    candidates: int = 100
    context_turns: int = 2
    dedupe_threshold: float | None = None
    reserve_s: float = 0.003


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


class _StageCosts:
    """Recent cost of each stage in seconds (EWMA), used to decide what fits."""

    def __init__(self, initial: dict[str, float], alpha: float = 0.2) -> None:
        self._cost = dict(initial)
        self._alpha = alpha
        self._lock = threading.Lock()

    def fits(self, stage: str, remaining_s: float) -> bool:
        """Whether the stage's recent cost fits; a miss shrinks the estimate a little.

        The shrink matters: a stage that was slow once (a GC pause, a busy neighbour) would
        otherwise never run again, and so never be measured again.
        """
        with self._lock:
            cost = self._cost.get(stage, 0.0005)
            if remaining_s >= cost:
                return True
            self._cost[stage] = cost * 0.8
            return False

    def observe(self, stage: str, seconds: float) -> None:
        with self._lock:
            old = self._cost.get(stage, seconds)
            self._cost[stage] = (1 - self._alpha) * old + self._alpha * seconds


class Searcher:
    def __init__(
        self,
        *,
        shard: IndexShard,
        embedder: Embedder,
        params: SearchParams,
        wait_for_seq: Callable[[int, float], bool] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._shard = shard
        self._embedder = embedder
        self._params = params
        self._wait_for_seq = wait_for_seq
        self._clock = clock
        self._costs = _StageCosts(
            {"lexical": 0.001, "embed": 0.002, "dense": 0.002, "fuse": 0.0002, "rerank": 0.001}
        )

    def search(
        self,
        query: str,
        *,
        k: int,
        mode: Mode,
        filters: Filters,
        deadline: Deadline,
        min_seq: int | None = None,
    ) -> SearchResult:
        p = self._params
        result = SearchResult(hits=[])
        usable = deadline.slice(max(0.0, deadline.remaining() - p.reserve_s))

        def run(stage: str, fn: Callable[[], T]) -> T | None:
            if not self._costs.fits(stage, usable.remaining()):
                result.degraded.append(stage)
                return None
            t0 = self._clock()
            out = fn()
            took = self._clock() - t0
            self._costs.observe(stage, took)
            result.timings_ms[stage] = round(took * 1000, 3)
            return out

        if min_seq is not None and self._shard.seq < min_seq:
            t0 = self._clock()
            waited = self._wait_for_seq is not None and self._wait_for_seq(
                min_seq, usable.remaining() / 2
            )
            result.timings_ms["wait"] = round((self._clock() - t0) * 1000, 3)
            if not waited:
                result.degraded.append("stale_index")

        n = max(k, p.candidates)
        runs: list[Hits] = []
        if mode in ("hybrid", "lexical"):
            lex = run(
                "lexical",
                lambda: self._shard.search_lexical(
                    query, n, filters=filters, timeout_s=usable.remaining()
                ),
            )
            if lex is not None:
                runs.append(lex)
        qvec: npt.NDArray[np.float32] | None = None
        if mode in ("hybrid", "dense"):
            qvec = run("embed", lambda: self._embedder.embed_query(query))
            if qvec is not None:
                vec = qvec
                dense = run(
                    "dense",
                    lambda: self._shard.search_dense(
                        vec, n, filters=filters, timeout_s=usable.remaining()
                    ),
                )
                if dense is not None:
                    runs.append(dense)
            else:
                result.degraded.append("dense")
        if not runs:
            if not result.degraded:
                return result  # nothing asked for: cannot happen with a valid mode
            raise DeadlineExceeded(
                f"no retriever fitted in the budget (skipped: {', '.join(result.degraded)})"
            )

        fused = runs[0] if len(runs) == 1 else self._fuse(runs, result)
        fused = self._rerank(fused, k, result, usable)
        fused = fused.top(k)
        self._hydrate(fused, result, deadline)
        result.index_seq = self._shard.seq
        return result

    def _fuse(self, runs: list[Hits], result: SearchResult) -> Hits:
        p = self._params
        t0 = self._clock()
        if p.fusion == "rrf":
            fused = rrf(runs, k=p.rrf_k)
        else:
            fused = convex(runs, weights=[p.lexical_weight, 1.0 - p.lexical_weight])
        result.timings_ms["fuse"] = round((self._clock() - t0) * 1000, 3)
        return fused

    def _rerank(
        self,
        hits: Hits,
        k: int,
        result: SearchResult,
        usable: Deadline,
    ) -> Hits:
        p = self._params
        if p.dedupe_threshold is None or len(hits) <= 1:
            return hits
        if not self._costs.fits("rerank", usable.remaining()):
            result.degraded.append("rerank")
            return hits
        t0 = self._clock()
        head, vectors = self._shard.live_vectors(hits.top(3 * k))
        out = dedupe(head, vectors, threshold=p.dedupe_threshold) if len(head) else head
        took = self._clock() - t0
        self._costs.observe("rerank", took)
        result.timings_ms["rerank"] = round(took * 1000, 3)
        return out

    def _hydrate(self, hits: Hits, result: SearchResult, deadline: Deadline) -> None:
        t0 = self._clock()
        turns = self._params.context_turns
        with_context = True
        for uid, score, rec in zip(
            hits.ids, hits.scores, self._shard.records(hits.ids), strict=True
        ):
            if rec is None:  # deleted between retrieval and hydration
                continue
            if with_context and deadline.expired():
                with_context = False
                result.degraded.append("context")
            ctx = (
                self._shard.context(int(uid), before=turns, after=turns)
                if with_context and turns
                else []
            )
            result.hits.append(Hit(record=rec, score=float(score), context=ctx))
        result.timings_ms["context"] = round((self._clock() - t0) * 1000, 3)
