"""Run every query of a dataset under every config against a ``Retriever``.

The retriever is the engine-facing boundary (in-process or over HTTP; see
``convmem.eval_cli``). It reports the latency it measured and what the engine skipped
(``degraded``), so this module reads no clock and does no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from eval.configs import EvalConfig
from eval.dataset import EvalQuery


@dataclass(frozen=True, slots=True)
class RetrievedList:
    """One query's results under one config: utterance ids best first, with their scores."""

    ids: tuple[str, ...]
    scores: tuple[float, ...]
    latency_ms: float
    degraded: tuple[str, ...] = ()


class Retriever(Protocol):
    def search(
        self,
        query: str,
        *,
        k: int,
        user_id: str | None,
        config: EvalConfig,
        asked_at: datetime | None = None,
    ) -> RetrievedList:
        """The top ``k`` utterances for ``query`` under ``config``, scoped to ``user_id``,
        asked at ``asked_at`` (None: now)."""
        ...


@dataclass(frozen=True, slots=True)
class ConfigRun:
    """What one config retrieved for every query (query id -> results, in query order)."""

    config: EvalConfig
    results: dict[str, RetrievedList]

    def rankings(self) -> dict[str, list[str]]:
        return {qid: list(r.ids) for qid, r in self.results.items()}

    def scored(self) -> dict[str, list[tuple[str, float]]]:
        return {qid: list(zip(r.ids, r.scores, strict=True)) for qid, r in self.results.items()}


def run_all(
    queries: Sequence[EvalQuery],
    configs: Sequence[EvalConfig],
    retriever: Retriever,
    *,
    k: int,
    progress: Callable[[int], None] | None = None,
) -> list[ConfigRun]:
    """Search each query under each config (configs interleaved per query, so a slow phase of
    the machine does not fall on one config alone). Duplicate ids keep their first rank."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    results: list[dict[str, RetrievedList]] = [{} for _ in configs]
    for q in queries:
        for i, config in enumerate(configs):
            got = retriever.search(
                q.text, k=k, user_id=q.user_id, config=config, asked_at=q.asked_at
            )
            results[i][q.id] = _distinct(got, k)
            if progress is not None:
                progress(1)
    return [ConfigRun(config=c, results=r) for c, r in zip(configs, results, strict=True)]


def _distinct(got: RetrievedList, k: int) -> RetrievedList:
    if len(got.ids) != len(got.scores):
        raise ValueError(f"a retriever returned {len(got.ids)} ids but {len(got.scores)} scores")
    first: dict[str, float] = {}
    for doc_id, score in zip(got.ids, got.scores, strict=True):
        first.setdefault(doc_id, score)
    pairs = list(first.items())[:k]
    if len(pairs) == len(got.ids):
        return got
    return RetrievedList(
        ids=tuple(d for d, _ in pairs),
        scores=tuple(s for _, s in pairs),
        latency_ms=got.latency_ms,
        degraded=got.degraded,
    )
