"""Score the runs of an evaluation and summarise them (the content of ``metrics.json``).

Metrics are macro-averaged over queries, overall and per category. Latency percentiles are
taken over the per-query latencies the retriever measured. Each config is compared with the
first (the baseline) by a paired randomisation test on per-query values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from eval.configs import EvalConfig
from eval.dataset import Dataset
from eval.metrics import evaluate, mean, parse_metric
from eval.paired import DEFAULT_PERMUTATIONS, DEFAULT_SEED, paired_comparison
from eval.runner import ConfigRun

OVERALL = "overall"
RECALL_CUTOFFS = (1, 5, 10, 20, 50)
METRICS = (
    *(f"recall@{k}" for k in RECALL_CUTOFFS),
    "hit@1",
    "hit@5",
    "hit@10",
    "precision@5",
    "precision@10",
    "ndcg@10",
    "mrr@10",
    "map",
)

PerQuery = dict[str, dict[str, float]]  # query id -> metric -> value
Comparison = dict[str, dict[str, dict[str, float]]]  # group -> metric -> base/other/delta/p/p_t


@dataclass(frozen=True, slots=True)
class ConfigSummary:
    config: EvalConfig
    overall: dict[str, float]
    by_category: dict[str, dict[str, float]]
    latencies_ms: list[float]  # per query, in query order
    degraded: dict[str, int]  # stage -> number of queries where it was skipped
    degraded_queries: int

    @property
    def latency_ms(self) -> dict[str, float]:
        return latency_stats(self.latencies_ms)


@dataclass(frozen=True, slots=True)
class Summary:
    dataset: Dataset
    k: int
    metrics: list[str]
    configs: list[ConfigSummary]  # the first is the baseline
    significance: dict[str, Comparison]  # config (not the baseline) -> comparison
    seed: int
    permutations: int

    def to_json(self) -> dict[str, object]:
        """The content of ``metrics.json``."""
        d = self.dataset
        return {
            "dataset": {
                "name": d.name,
                "queries": len(d.queries),
                "utterances": len(d.utterances),
                "categories": d.category_sizes(),
                "counts": dict(d.counts),
                "notes": list(d.notes),
            },
            "k": self.k,
            "depth": depth(self.metrics),
            "metrics": self.metrics,
            "configs": {
                c.config.name: {
                    "params": c.config.as_dict(),
                    OVERALL: c.overall,
                    "by_category": c.by_category,
                    "latency_ms": c.latency_ms,
                    "degraded_queries": c.degraded_queries,
                    "degraded": c.degraded,
                }
                for c in self.configs
            },
            "significance": {
                "baseline": self.configs[0].config.name,
                "test": "paired randomisation, two-sided, mean difference (Smucker et al. 2007)",
                "permutations": self.permutations,
                "seed": self.seed,
                "configs": self.significance,
            },
        }


def metric_names(k: int) -> list[str]:
    """The reported metrics, plus the headline ones at cutoff ``k`` if not already there."""
    names = list(METRICS)
    for base in ("recall", "hit", "ndcg"):
        if f"{base}@{k}" not in names:
            names.append(f"{base}@{k}")
    return names


def depth(metrics: Sequence[str]) -> int:
    """How many results to fetch per query: the largest cutoff (50 when none is given)."""
    cutoffs = [k for _, k in map(parse_metric, metrics) if k is not None]
    return max([50, *cutoffs])


def score_runs(
    dataset: Dataset, runs: Sequence[ConfigRun], metrics: Sequence[str]
) -> dict[str, PerQuery]:
    """config name -> query id -> metric -> value."""
    qrels = dataset.qrels()
    return {r.config.name: evaluate(r.rankings(), qrels, metrics) for r in runs}


def per_query_json(
    dataset: Dataset, runs: Sequence[ConfigRun], per_query: dict[str, PerQuery]
) -> dict[str, object]:
    """The content of ``per_query.json``: what ``compare`` needs to test differences."""
    return {
        "queries": {q.id: {"category": q.category, "user_id": q.user_id} for q in dataset.queries},
        "categories": list(dataset.categories),
        "configs": {
            r.config.name: {
                "params": r.config.as_dict(),
                "metrics": per_query[r.config.name],
                "latency_ms": {qid: res.latency_ms for qid, res in r.results.items()},
                "degraded": {
                    qid: list(res.degraded) for qid, res in r.results.items() if res.degraded
                },
            }
            for r in runs
        },
    }


def latency_stats(latencies_ms: Sequence[float]) -> dict[str, float]:
    values = np.asarray(latencies_ms, dtype=np.float64)
    if values.shape[0] == 0:
        raise ValueError("no latency to summarise")
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {
        "p50": float(p50),
        "p95": float(p95),
        "p99": float(p99),
        "mean": float(values.mean()),
        "max": float(values.max()),
    }


def summarise(
    dataset: Dataset,
    runs: Sequence[ConfigRun],
    per_query: dict[str, PerQuery],
    metrics: Sequence[str],
    *,
    k: int,
    seed: int = DEFAULT_SEED,
    permutations: int = DEFAULT_PERMUTATIONS,
) -> Summary:
    """Macro-averages, latencies and significance against ``runs[0]``."""
    if not runs:
        raise ValueError("no run to summarise")
    groups = category_groups(dataset)
    configs = []
    for run in runs:
        scores = per_query[run.config.name]
        degraded: dict[str, int] = {}
        for r in run.results.values():
            for stage in r.degraded:
                degraded[stage] = degraded.get(stage, 0) + 1
        configs.append(
            ConfigSummary(
                config=run.config,
                overall=mean(scores),
                by_category={c: mean(scores, ids) for c, ids in groups.items() if c != OVERALL},
                latencies_ms=[r.latency_ms for r in run.results.values()],
                degraded=degraded,
                degraded_queries=sum(1 for r in run.results.values() if r.degraded),
            )
        )
    base = per_query[runs[0].config.name]
    significance = {
        run.config.name: {
            group: paired_comparison(
                base, per_query[run.config.name], metrics, ids, seed=seed, permutations=permutations
            )
            for group, ids in groups.items()
        }
        for run in runs[1:]
    }
    return Summary(
        dataset=dataset,
        k=k,
        metrics=list(metrics),
        configs=configs,
        significance=significance,
        seed=seed,
        permutations=permutations,
    )


def category_groups(dataset: Dataset) -> dict[str, list[str]]:
    """ "overall" -> every query id, then each category -> its query ids."""
    groups: dict[str, list[str]] = {OVERALL: [q.id for q in dataset.queries]}
    for c in dataset.categories:
        groups[c] = [q.id for q in dataset.queries if q.category == c]
    return groups
