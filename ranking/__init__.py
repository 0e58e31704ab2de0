"""ranking: pure fusion, normalisation and diversification over ``Hits``.

Imports only numpy and the standard library (``tests/test_layering.py`` checks it).
"""

from ranking.convex import convex
from ranking.dedupe import dedupe
from ranking.hits import Hits
from ranking.mmr import mmr
from ranking.neighbours import spread_to_neighbours
from ranking.normalize import min_max, z_score
from ranking.question_prior import damp, is_question
from ranking.rerank import rerank_head
from ranking.rrf import rrf

__all__ = [
    "convex",
    "damp",
    "dedupe",
    "Hits",
    "is_question",
    "min_max",
    "mmr",
    "rerank_head",
    "rrf",
    "spread_to_neighbours",
    "z_score",
]
