"""eval: relevance metrics (per query, ranx style) and their evaluation by name.

Imports only numpy and the standard library so far.
"""

from eval.average_precision import average_precision
from eval.hit_rate import hit_rate
from eval.metrics import evaluate, mean, parse_metric
from eval.mrr import reciprocal_rank
from eval.ndcg import ndcg
from eval.precision import precision
from eval.recall import recall

__all__ = [
    "average_precision",
    "evaluate",
    "hit_rate",
    "mean",
    "ndcg",
    "parse_metric",
    "precision",
    "recall",
    "reciprocal_rank",
]
