"""What the scale benchmark asks of a tier, and the timing loop every tier goes through.

A tier is a small adapter (`ScaleTier`): it builds itself from the corpus (returning its
build figures), answers the three calls the benchmark times, and reports its size. The
in-process and Milvus tiers answer ``hybrid`` through the same `Searcher` with default
`SearchParams`, so their figures compare like for like; pgvector answers it with one SQL
statement. ``measure`` times each call per scope and keeps the top-k ids of each
for the recall figures. Before timing it freezes the heap as the served process does after
start-up (``query_service.heap.HeapFreezer``), and it counts the garbage collector's passes
and their longest pause while the searches run, so a tail that is a collection shows as one.
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from eval.bench_report import percentiles
from eval.scale_corpus import Corpus, Scope
from indexer.models import Filters
from query_service.heap import HeapFreezer

K = 10
#: the slowest hybrid searches kept per scope, with their stage times (what a p99 is made of)
SLOWEST = 3
#: the served search budget (``LatencyBudgets.total_ms``)
BUDGET_MS = 50.0


@dataclass(frozen=True, slots=True)
class Answer:
    """A hybrid search's top-k ids, and what the searcher says about it."""

    ids: list[int]
    degraded: list[str] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)


class ScaleTier(Protocol):
    name: str

    def build(self, corpus: Corpus) -> dict[str, Any]:
        """Index the whole corpus; return the build figures (times, memory)."""
        ...

    def hybrid(self, query: str, filters: Filters) -> Answer:
        """The served hybrid search (embedding the query included), top ``K``."""
        ...

    def dense(self, vector: npt.NDArray[np.float32], filters: Filters) -> list[int]:
        """The raw dense call: top ``K`` ids by inner product within ``filters``."""
        ...

    def lexical(self, query: str, filters: Filters) -> list[int]:
        """The raw lexical call: top ``K`` ids by the tier's full-text ranking."""
        ...

    def size(self) -> dict[str, Any]:
        """Bytes in memory and on disk, as the tier can tell."""
        ...


class TierNotRunnable(RuntimeError):
    """This machine cannot run the tier (reported as not run, not as failed)."""


def measure(
    tier: ScaleTier,
    scopes: Sequence[Scope],
    queries: Sequence[str],
    vectors: npt.NDArray[np.float32],
    *,
    warmup: int,
) -> dict[str, dict[str, Any]]:
    """Per scope: latency percentiles (ms) of ``hybrid``, ``dense`` and ``lexical`` over
    the queries after the first ``warmup``, the shares of degraded and of failed hybrid
    answers (no answer: a 504, or a tier call that raised), the mean
    of each searcher stage, and every query's hybrid, dense and lexical top-k ids."""
    out: dict[str, dict[str, Any]] = {}
    HeapFreezer(size=lambda: 0).maybe_freeze()
    for scope in scopes:
        watch = GcWatch()
        lat: dict[str, list[float]] = {"hybrid": [], "dense": [], "lexical": []}
        hybrid_ids: list[list[int]] = []
        dense_ids: list[list[int]] = []
        lexical_ids: list[list[int]] = []
        stages: dict[str, list[float]] = {}
        degraded = failed = 0
        slow: list[tuple[float, int, dict[str, float]]] = []
        desc = f"{tier.name} {scope.name}"
        for i, q in enumerate(tqdm(queries, desc=desc, unit="q", file=sys.stderr)):
            watch.on = i >= warmup
            t0 = time.perf_counter()
            answer = tier.hybrid(q, scope.filters)
            t1 = time.perf_counter()
            watch.on = False
            dense = tier.dense(vectors[i], scope.filters)
            t2 = time.perf_counter()
            lexical = tier.lexical(q, scope.filters)
            t3 = time.perf_counter()
            hybrid_ids.append(answer.ids)
            dense_ids.append(dense)
            lexical_ids.append(lexical)
            if i < warmup:
                continue
            for key, ms in zip(lat, ((t1 - t0), (t2 - t1), (t3 - t2)), strict=True):
                lat[key].append(ms * 1000)
            degraded += bool(answer.degraded)
            failed += any(d.startswith(("failed", "504")) for d in answer.degraded)
            for stage, ms in answer.timings_ms.items():
                stages.setdefault(stage, []).append(ms)
            slow.append(((t1 - t0) * 1000, i, answer.timings_ms))
        n = max(1, len(lat["hybrid"]))
        out[scope.name] = {
            "scope_docs": scope.docs,
            "latency_ms": {key: percentiles(v) for key, v in lat.items() if v},
            "degraded_share": round(degraded / n, 4),
            "failed_share": round(failed / n, 4),
            "stage_mean_ms": {s: round(float(np.mean(v)), 3) for s, v in stages.items()},
            "gc_during_hybrid": watch.close(),
            "slowest_hybrid": [
                {
                    "ms": round(ms, 2),
                    "query": i,
                    "stages_ms": {k: round(v, 2) for k, v in t.items()},
                }
                for ms, i, t in sorted(slow, key=lambda x: -x[0])[:SLOWEST]
            ],
            "hybrid_ids": hybrid_ids,
            "dense_ids": dense_ids,
            "lexical_ids": lexical_ids,
        }
    return out


class GcWatch:
    """The collector's passes (per generation) and the longest pause, while ``on``."""

    def __init__(self) -> None:
        self.on = False
        self._passes = [0, 0, 0]
        self._longest_ms = 0.0
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if not self.on:
            return
        if phase == "start":
            self._started = time.perf_counter()
            return
        self._passes[info["generation"]] += 1
        self._longest_ms = max(self._longest_ms, (time.perf_counter() - self._started) * 1000)

    def close(self) -> dict[str, Any]:
        gc.callbacks.remove(self._callback)
        return {
            "passes_by_generation": list(self._passes),
            "longest_ms": round(self._longest_ms, 2),
        }
