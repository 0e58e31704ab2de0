"""Compare two evaluation results directories (A, the reference, and B) query by query.

For each config in both, and each group (overall and every category in both), every metric's
mean in A and B, the difference B - A, and its paired randomisation p-value over the queries
scored in both. A metric "moved" when its difference is not zero.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from eval.errors import ResultsError
from eval.paired import DEFAULT_PERMUTATIONS, DEFAULT_SEED, paired_comparison
from eval.summary import OVERALL

_EPS = 1e-12


@dataclass(frozen=True, slots=True)
class MetricChange:
    config: str
    group: str  # "overall" or a category
    metric: str
    n: int  # queries compared
    a: float
    b: float
    delta: float
    p: float


@dataclass(frozen=True, slots=True)
class Results:
    categories: dict[str, str]  # query id -> category
    metrics: dict[str, dict[str, dict[str, float]]]  # config -> query id -> metric -> value


def load_results(directory: Path) -> Results:
    path = directory / "per_query.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Results(
            categories={q: str(v["category"]) for q, v in data["queries"].items()},
            metrics={name: c["metrics"] for name, c in data["configs"].items()},
        )
    except OSError as exc:
        raise ResultsError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ResultsError(f"{path}: not a convmem per_query.json ({exc!r})") from exc


def compare(
    a: Results,
    b: Results,
    *,
    seed: int = DEFAULT_SEED,
    permutations: int = DEFAULT_PERMUTATIONS,
) -> list[MetricChange]:
    """Every (config, group, metric) present in both, whether or not it moved."""
    common = [q for q in a.categories if q in b.categories]
    if not common:
        raise ResultsError("the two results share no query id")
    groups: dict[str, list[str]] = {OVERALL: common}
    for q in common:
        if a.categories[q] == b.categories[q]:
            groups.setdefault(a.categories[q], []).append(q)
    changes = []
    for config, per_query_a in a.metrics.items():
        if config not in b.metrics:
            continue
        per_query_b = b.metrics[config]
        metrics = [m for m in next(iter(per_query_a.values()), {}) if m in _first(per_query_b)]
        for group, ids in groups.items():
            rows = paired_comparison(
                per_query_a, per_query_b, metrics, ids, seed=seed, permutations=permutations
            )
            changes += [
                MetricChange(config, group, m, len(ids), r["base"], r["other"], r["delta"], r["p"])
                for m, r in rows.items()
            ]
    return changes


def moved(changes: list[MetricChange]) -> list[MetricChange]:
    return [c for c in changes if abs(c.delta) > _EPS]


def _first(per_query: dict[str, dict[str, float]]) -> dict[str, float]:
    return next(iter(per_query.values()), {})
