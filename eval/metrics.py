"""Evaluate a run against qrels by metric name, per query, and macro-average the results.

Metric names: ``recall@k``, ``hit@k``, ``precision@k``, ``ndcg@k``, ``mrr@k`` (k required),
and ``map`` or ``map@k``; k is an int >= 1 written without sign or leading zeros.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence

from eval.average_precision import average_precision
from eval.hit_rate import hit_rate
from eval.mrr import reciprocal_rank
from eval.ndcg import ndcg
from eval.precision import precision
from eval.recall import recall

_Metric = Callable[[Sequence[str], Mapping[str, int], int | None], float]


def _with_k(metric: Callable[..., float]) -> _Metric:
    def call(run: Sequence[str], qrels: Mapping[str, int], k: int | None) -> float:
        return metric(run, qrels, k=k)

    return call


_METRICS: dict[str, _Metric] = {
    "recall": _with_k(recall),
    "hit": _with_k(hit_rate),
    "precision": _with_k(precision),
    "ndcg": _with_k(ndcg),
    "mrr": _with_k(reciprocal_rank),
    "map": _with_k(average_precision),
}
_CUTOFF_OPTIONAL = {"map"}
_NAME = re.compile(r"(?P<metric>[a-z]+)(?:@(?P<k>[1-9][0-9]*))?")


def parse_metric(name: str) -> tuple[str, int | None]:
    """Split ``"ndcg@10"`` into ``("ndcg", 10)`` and ``"map"`` into ``("map", None)``.

    Raises:
        ValueError: an unknown metric, a malformed cutoff, or a missing one where required.
    """
    match = _NAME.fullmatch(name) if isinstance(name, str) else None
    if match is None or match["metric"] not in _METRICS:
        known = ", ".join(f"{m}@k" for m in _METRICS if m not in _CUTOFF_OPTIONAL)
        raise ValueError(f"unknown metric {name!r}; known: {known}, map, map@k")
    metric, k = match["metric"], match["k"]
    if k is None and metric not in _CUTOFF_OPTIONAL:
        raise ValueError(f"metric {name!r} needs a cutoff, as in {metric}@10")
    return metric, None if k is None else int(k)


def evaluate(
    run: Mapping[str, Sequence[str]],
    qrels: Mapping[str, Mapping[str, int]],
    metrics: Sequence[str],
) -> dict[str, dict[str, float]]:
    """Score every query of ``qrels`` on every metric.

    The queries are those of ``qrels``, in its order: a query the run lacks is scored as an
    empty ranking (0 on every metric), and a run query without qrels is ignored (it cannot be
    judged), as trec_eval does. Every query in ``qrels`` needs at least one relevant document
    (grade > 0); drop those without one first (for LoCoMo, the adversarial questions).

    Args:
        run: query id -> doc ids, best first, distinct (ties resolved before).
        qrels: query id -> (doc id -> grade); grade > 0 is relevant.
        metrics: names such as ``["recall@10", "ndcg@10", "mrr@10", "map"]``.

    Returns:
        query id -> (metric name -> value), metric names as given.

    Raises:
        ValueError: an unknown or malformed metric name, no metric, or a query whose run or
            qrels are invalid (the message names the query).
    """
    if isinstance(metrics, str):
        raise ValueError("metrics must be a sequence of names, not a single string")
    if len(metrics) == 0:
        raise ValueError("no metric to compute")
    parsed = [(name, *parse_metric(name)) for name in metrics]
    results: dict[str, dict[str, float]] = {}
    for query_id, judged in qrels.items():
        ranking = run.get(query_id, ())
        try:
            results[query_id] = {
                name: _METRICS[metric](ranking, judged, k) for name, metric, k in parsed
            }
        except ValueError as exc:
            raise ValueError(f"query {query_id!r}: {exc}") from exc
    return results


def mean(
    per_query: Mapping[str, Mapping[str, float]], query_ids: Iterable[str] | None = None
) -> dict[str, float]:
    r"""Macro-average: for each metric, the mean of its per-query values.

    .. math::

        \bar{m} = \frac{1}{|Q|} \sum_{q \in Q} m(q)

    Args:
        per_query: the output of ``evaluate`` (query id -> metric name -> value).
        query_ids: average over these queries only (a subset, e.g. one LoCoMo category);
            None for all.

    Returns:
        metric name -> mean value.

    Raises:
        ValueError: no query to average, an unknown or repeated query id, or queries with
            different metric sets.
    """
    if isinstance(query_ids, str):
        raise ValueError("query_ids must be an iterable of ids, not a single string")
    ids = list(per_query) if query_ids is None else list(query_ids)
    if not ids:
        raise ValueError("no query to average over")
    if len(set(ids)) != len(ids):
        raise ValueError("query_ids has duplicates")
    unknown = [q for q in ids if q not in per_query]
    if unknown:
        raise ValueError(f"unknown query ids: {unknown[:5]!r}")
    names = list(per_query[ids[0]])
    for q in ids:
        if set(per_query[q]) != set(names):
            raise ValueError(f"query {q!r} has metrics {sorted(per_query[q])}, not {names}")
    return {name: math.fsum(per_query[q][name] for q in ids) / len(ids) for name in names}
