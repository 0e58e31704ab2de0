"""Evaluation datasets: utterances to index, and queries judged against utterance ids.

A query's ``qrels`` map utterance ids to graded relevance (grade > 0 is relevant, higher is
more relevant). ``user_id`` scopes the query to one user's memory, as a real search would be
scoped; ``category`` groups queries in reports (e.g. LoCoMo's multi-hop, temporal, ...).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from eval.errors import DatasetError
from indexer.models import UtteranceIn

UNCATEGORISED = "uncategorised"


@dataclass(frozen=True, slots=True)
class EvalQuery:
    id: str
    text: str
    qrels: Mapping[str, int]
    category: str = UNCATEGORISED
    user_id: str | None = None
    #: when the question is asked (with a time zone), for "last week" and the like; None:
    #: whenever the evaluation runs
    asked_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Dataset:
    """Utterances and judged queries, plus what loading had to fix (``notes``)."""

    name: str
    utterances: tuple[UtteranceIn, ...]
    queries: tuple[EvalQuery, ...]
    notes: tuple[str, ...] = ()
    counts: Mapping[str, int] = field(default_factory=dict)
    category_order: tuple[str, ...] = ()

    @property
    def categories(self) -> tuple[str, ...]:
        """Category names present: those of ``category_order`` first, then by appearance."""
        present = dict.fromkeys(q.category for q in self.queries)
        return tuple(
            [c for c in self.category_order if c in present]
            + [c for c in present if c not in self.category_order]
        )

    def category_sizes(self) -> dict[str, int]:
        sizes = Counter(q.category for q in self.queries)
        return {c: sizes[c] for c in self.categories}

    def qrels(self) -> dict[str, dict[str, int]]:
        """query id -> (utterance id -> grade), in query order (the input of ``evaluate``)."""
        return {q.id: dict(q.qrels) for q in self.queries}

    def for_users(self, users: Sequence[str] | None) -> Dataset:
        """The same utterances, with only the queries scoped to one of ``users`` (all: None).

        Every utterance stays loaded, so corpus statistics (BM25's idf) match the full run.
        """
        if not users:
            return self
        wanted = set(users)
        known = {q.user_id for q in self.queries}
        missing = sorted(wanted - known)
        if missing:
            raise DatasetError(f"no queries for user(s) {', '.join(missing)}")
        return Dataset(
            name=self.name,
            utterances=self.utterances,
            queries=tuple(q for q in self.queries if q.user_id in wanted),
            notes=(*self.notes, f"queries of users {', '.join(sorted(wanted))} only"),
            counts=self.counts,
            category_order=self.category_order,
        )

    def limited(self, n: int | None) -> Dataset:
        """The same dataset with only the first ``n`` queries (all when None)."""
        if n is None:
            return self
        if n < 1:
            raise DatasetError(f"the query limit must be >= 1, got {n}")
        return Dataset(
            name=self.name,
            utterances=self.utterances,
            queries=self.queries[:n],
            notes=(*self.notes, f"limited to the first {min(n, len(self.queries))} queries"),
            counts=self.counts,
            category_order=self.category_order,
        )


def validate(utterances: Sequence[UtteranceIn], queries: Sequence[EvalQuery], source: str) -> None:
    """Check that a dataset is usable; raise ``DatasetError`` naming the first problem.

    Utterance and query ids are unique, every query has text and at least one relevant
    judgement, every judged id is an utterance of the dataset, and every relevant utterance
    lies within the query's scope (its ``user_id``, when given): otherwise it could never be
    retrieved and the query would measure nothing.
    """
    owner: dict[str, str | None] = {}
    for u in utterances:
        if u.id in owner:
            raise DatasetError(f"{source}: utterance id {u.id!r} appears twice")
        owner[u.id] = u.user_id
    if not queries:
        raise DatasetError(f"{source}: no queries")
    seen: set[str] = set()
    for q in queries:
        where = f"{source}: query {q.id!r}"
        if not q.id.strip():
            raise DatasetError(f"{source}: a query has an empty id")
        if q.id in seen:
            raise DatasetError(f"{where} appears twice")
        seen.add(q.id)
        if q.category == "overall":
            raise DatasetError(f'{where}: "overall" is reserved, not a category name')
        if not q.text.strip():
            raise DatasetError(f"{where} has empty text")
        if not any(g > 0 for g in q.qrels.values()):
            raise DatasetError(f"{where} has no relevant utterance (grade > 0)")
        unknown = sorted(doc for doc in q.qrels if doc not in owner)
        if unknown:
            raise DatasetError(f"{where}: qrels name unknown utterance ids {unknown[:5]}")
        if q.user_id is not None:
            outside = sorted(d for d, g in q.qrels.items() if g > 0 and owner[d] != q.user_id)
            if outside:
                raise DatasetError(
                    f"{where}: relevant utterances {outside[:5]} are outside the query's"
                    f" scope (user_id {q.user_id!r})"
                )
