"""`OpenSearchTier`: the `IndexTier` over an OpenSearch index (BM25, HNSW k-NN, records).

A replica holds no corpus: one change-feed worker writes (`apply`), any number of replicas
read, and turn order, context and speakers are asked of the cluster. The request bodies are
pure functions (``opensearch_requests``, ``opensearch_lookups``, ``opensearch_bulk``,
``opensearch_mapping``), and so are the window planning (``opensearch_windows``) and the
reading of answers (``opensearch_responses``); ``opensearch_client`` sends them. This module
puts them together. ``docs/OPENSEARCH.md`` says how to point convmem at a cluster.

``opensearchpy`` is imported only when a tier is built (the caller makes the client), so
importing this module needs no driver.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from indexer import opensearch_lookups as lookups
from indexer import opensearch_requests as rq
from indexer import opensearch_responses as answers
from indexer.models import PLAIN_BM25, Change, Filters, LexicalOptions
from indexer.opensearch_bulk import bulk_actions, bulk_bodies
from indexer.opensearch_client import DriverErrors, IndexCalls, ensure_indexes, ensure_pipeline
from indexer.opensearch_cursor import FeedCursor
from indexer.opensearch_mapping import (
    EMBEDDING,
    IS_QUESTION,
    RECORD_FIELDS,
    UID,
    Body,
    Engine,
    Space,
    index_body,
)
from indexer.opensearch_windows import Turn, fetch_scope, missing_conversations, plan_apply
from indexer.records import DocRecord
from ranking.hits import Hits

if TYPE_CHECKING:
    from opensearchpy import OpenSearch

__all__ = ["OpenSearchTier"]

#: The share of a search's ``timeout_s`` given to the cluster's own ``timeout``: the rest is
#: left for it to answer with what it found (``Hits.exhaustive`` False) before the client
#: gives up on the request.
_SERVER_SHARE = 0.8


class OpenSearchTier:
    """An `IndexTier` over the OpenSearch index ``index`` (an alias works: reads and writes
    follow it, so a re-index switches with one alias update).

    ``dim`` is the embedder's dimension. ``cursor_index`` holds, per utterance index, the
    change-feed ``seq`` its documents cover, which ``seq`` reads (cached for ``seq_ttl_s``)
    and a worker resumes from, and what it was built from (`identity`). ``engine``,
    ``space``, ``shards`` and ``replicas`` shape the index `ensure_index` creates. Requests
    other than searches wait up to ``request_timeout_s``; a bulk request carries at most
    ``bulk_max_actions`` actions.
    Thread-safe for reads; one writer at a time.
    """

    remote = True

    def __init__(
        self,
        *,
        client: OpenSearch,
        index: str,
        dim: int,
        cursor_index: str = "convmem-cursors",
        engine: Engine = "lucene",
        space: Space = "innerproduct",
        shards: int = 1,
        replicas: int = 1,
        request_timeout_s: float = 10.0,
        bulk_max_actions: int = 1000,
        seq_ttl_s: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._mapping = index_body(
            dim=dim, engine=engine, space=space, shards=shards, replicas=replicas
        )
        if bulk_max_actions < 1:
            raise ValueError(f"bulk_max_actions must be at least 1, got {bulk_max_actions}")
        self._client = client
        self._errors = DriverErrors.load()  # the driver, now that a client exists
        self._calls = IndexCalls(
            client=client, errors=self._errors, index=index, timeout_s=request_timeout_s
        )
        self._cursor = FeedCursor(
            client=client,
            errors=self._errors,
            cursor_index=cursor_index,
            index=index,
            timeout_s=request_timeout_s,
            ttl_s=seq_ttl_s,
            clock=clock,
        )
        self._index = index
        self._dim = dim
        self._cursor_index = cursor_index
        self._space: Space = space
        self._timeout_s = request_timeout_s
        self._bulk_max_actions = bulk_max_actions
        self._clock = clock

    @property
    def index(self) -> str:
        """The utterance index (or alias) this tier reads and writes."""
        return self._index

    def ensure_index(self) -> None:
        """Create the utterance index and the cursor index if missing (idempotent); refuse
        an existing index made for another vector dimension (``IndexUnavailable``)."""
        ensure_indexes(
            self._client,
            self._errors,
            index=self._index,
            body=self._mapping,
            dim=self._dim,
            cursor_index=self._cursor_index,
            timeout_s=self._timeout_s,
        )

    def ensure_pipeline(self, name: str, weights: tuple[float, float] = (0.5, 0.5)) -> None:
        """Create or replace the search pipeline `search_hybrid` names (lexical, dense)."""
        ensure_pipeline(
            self._client, self._errors, name=name, weights=weights, timeout_s=self._timeout_s
        )

    def identity(self) -> str | None:
        """What the index was built from (`set_identity`), None if never said."""
        return self._cursor.identity()

    def set_identity(self, identity: str) -> None:
        """Record what the index is built from: the store's identity and the vectors' model.
        A feed worker that finds another one empties it (`clear`) and applies the feed again."""
        self._cursor.set_identity(identity)

    def clear(self) -> None:
        """Delete every document and reset the cursor: an empty tier at ``seq`` 0."""
        self._calls.delete_all()
        self._cursor.reset()

    def __len__(self) -> int:
        """Live utterances held (a count request: not for the search path)."""
        return self._calls.count()

    # -- the change feed ----------------------------------------------------------------

    @property
    def seq(self) -> int:
        """The stored cursor: the highest ``seq`` whose changes are written and visible."""
        return self._cursor.read()

    def apply(self, changes: Sequence[Change]) -> int:
        """Write ``changes`` (windows computed from the stored turn order), then the cursor.

        Each bulk request waits for a refresh (``refresh=wait_for``), so once this returns
        the changes are visible to searches. The cursor is written only after every bulk
        request succeeded, so a worker that fails part-way resumes before the batch and
        applies it again: idempotent, since every action is an overwrite or a delete.
        """
        if not changes:
            return self.seq
        uids, conversations = fetch_scope(changes)
        stored = self._turns(conversations, uids)
        extra = missing_conversations(changes, stored)
        if extra:
            stored += self._turns(extra, ())
        actions = bulk_actions(self._index, plan_apply(changes, stored))
        for lines in bulk_bodies(actions, self._bulk_max_actions):
            self._calls.bulk(lines)
        return self._cursor.write(changes[-1].seq)

    def _turns(self, conversations: Sequence[tuple[str, str]], uids: Sequence[int]) -> list[Turn]:
        """The stored turns of ``conversations`` and ``uids``, read in pages by uid."""
        out: dict[int, Turn] = {}
        after: int | None = None
        while True:
            body = lookups.turns_of(conversations, uids, size=rq.MAX_PAGE, after=after)
            page = [
                answers.turn_of_source(s) for s in answers.sources(self._calls.search(body, None))
            ]
            out.update((t.uid, t) for t in page)
            if len(page) < rq.MAX_PAGE:
                return list(out.values())
            after = page[-1].uid

    # -- searches -----------------------------------------------------------------------

    def search_lexical(
        self,
        query: str,
        k: int,
        *,
        filters: Filters,
        timeout_s: float,
        options: LexicalOptions = PLAIN_BM25,
    ) -> Hits:
        """BM25 (``opensearch_requests.lexical_query``); ``k`` is capped at 10,000.

        With ``options.speaker_weight`` > 0 a first request asks which query words name a
        speaker within ``filters`` (``speaker_probe``); both share ``timeout_s``.
        """
        _check_k(k)
        if k == 0 or timeout_s <= 0:
            return Hits.empty()
        end = self._clock() + timeout_s
        lexical = self._lexical_query(query, filters, options, timeout_s)
        if lexical is None:
            return Hits.empty()  # no words: nothing matches
        n = min(k, rq.MAX_PAGE)
        body = rq.ranked_search(lexical, n, timeout_ms=_server_ms(end - self._clock()))
        return self._hits(body, filters.tenant, end - self._clock())

    def search_dense(
        self, vector: npt.NDArray[np.float32], k: int, *, filters: Filters, timeout_s: float
    ) -> Hits:
        """k-NN with the filter inside the clause; the scores are inner products."""
        _check_k(k)
        if np.shape(vector) != (self._dim,):
            raise ValueError(f"vector must have shape ({self._dim},), got {np.shape(vector)}")
        if k == 0 or timeout_s <= 0:
            return Hits.empty()
        n = min(k, rq.MAX_PAGE)
        body = rq.ranked_search(
            rq.knn_query(vector, n, filters), n, timeout_ms=_server_ms(timeout_s)
        )
        return self._hits(body, filters.tenant, timeout_s, dense=True)

    def search_hybrid(
        self,
        query: str,
        vector: npt.NDArray[np.float32],
        k: int,
        *,
        filters: Filters,
        timeout_s: float,
        pipeline: str,
        options: LexicalOptions = PLAIN_BM25,
    ) -> Hits:
        """BM25 and k-NN in one request, fused by the cluster (not part of `IndexTier`:
        the ``Searcher`` fuses on its side). ``pipeline`` is one `ensure_pipeline` made. A
        query with no words is the dense search alone."""
        _check_k(k)
        if k == 0 or timeout_s <= 0:
            return Hits.empty()
        end = self._clock() + timeout_s
        lexical = self._lexical_query(query, filters, options, timeout_s)
        if lexical is None:
            return self.search_dense(vector, k, filters=filters, timeout_s=timeout_s)
        n = min(k, rq.MAX_PAGE)
        dense = rq.knn_query(vector, n, filters)
        body = rq.hybrid_search(lexical, dense, n, timeout_ms=_server_ms(end - self._clock()))
        return self._hits(body, filters.tenant, end - self._clock(), pipeline=pipeline)

    def _lexical_query(
        self, query: str, filters: Filters, options: LexicalOptions, timeout_s: float
    ) -> Body | None:
        """The BM25 query of ``query`` (after the speaker probe), None if it has no words."""
        words = rq.query_words(query, drop_stopwords=options.drop_stopwords)
        if not words:
            return None
        names: frozenset[str] = frozenset()
        if options.speaker_weight > 0:
            terms = [w for w, _ in words]
            probe = self._calls.timed_search(
                rq.speaker_probe(terms, filters), filters.tenant, timeout_s
            )
            names = frozenset() if probe is None else rq.named_words(terms, probe)
        return rq.lexical_query(words, filters, options, names)

    def _hits(
        self,
        body: Body,
        tenant: str,
        timeout_s: float,
        *,
        dense: bool = False,
        pipeline: str | None = None,
    ) -> Hits:
        answer = None
        if timeout_s > 0:
            answer = self._calls.timed_search(body, tenant, timeout_s, pipeline=pipeline)
        if answer is None:  # out of time, or no answer in it: nothing seen
            return Hits(np.empty(0, np.int64), np.empty(0, np.float32), exhaustive=False)
        ids, scores, exhaustive = answers.hits_of(answer)
        as_f32 = scores.astype(np.float32)
        return Hits(ids, rq.inner_product(as_f32, self._space) if dense else as_f32, exhaustive)

    # -- lookups ------------------------------------------------------------------------

    def speakers(self, tenant: str, user_id: str | None = None) -> list[str]:
        names: list[str] = []
        after: str | None = None
        while True:
            body = lookups.speakers_page(tenant, user_id, after=after)
            page, after = answers.speakers_of(self._calls.search(body, tenant))
            names.extend(page)
            if after is None:
                return sorted(names)

    def questions(self, uids: Iterable[int]) -> list[bool]:
        wanted = [int(u) for u in uids]
        found = self._calls.by_uid(wanted, (UID, IS_QUESTION))
        return [u in found and found[u].get(IS_QUESTION) is True for u in wanted]

    def records(self, uids: Iterable[int]) -> list[DocRecord | None]:
        wanted = [int(u) for u in uids]
        found = self._calls.by_uid(wanted, RECORD_FIELDS)
        return [answers.record_of_source(found[u]) if u in found else None for u in wanted]

    def context_many(
        self, uids: Sequence[int], *, before: int, after: int
    ) -> dict[int, list[DocRecord]]:
        """Two round trips: where each uid is (by uid), then one ``msearch`` of its sides."""
        found = self._calls.by_uid(uids, lookups.TURN_FIELDS)
        anchors = [
            answers.turn_of_source(found[u]) for u in dict.fromkeys(map(int, uids)) if u in found
        ]
        sides: dict[int, dict[str, list[DocRecord]]] = {a.uid: {} for a in anchors}
        lines, slots = lookups.context_searches(
            anchors, index=self._index, before=before, after=after
        )
        if lines:
            for (uid, side), answer in zip(slots, self._calls.msearch(lines), strict=True):
                sides[uid][side] = [answers.record_of_source(s) for s in answers.sources(answer)]
        return {u: s.get("before", [])[::-1] + s.get("after", []) for u, s in sides.items()}

    def live_vectors(self, hits: Hits) -> tuple[Hits, npt.NDArray[np.float32]]:
        found = self._calls.by_uid([int(u) for u in hits.ids], (UID, EMBEDDING))
        keep = np.fromiter((int(u) in found for u in hits.ids), bool, len(hits))
        live = Hits(hits.ids[keep], hits.scores[keep], hits.exhaustive)
        vectors = np.empty((len(live), self._dim), dtype=np.float32)
        for row, uid in enumerate(live.ids):
            vectors[row] = answers.vector_of_source(found[int(uid)], self._dim)
        return live, vectors


def _check_k(k: int) -> None:
    if k < 0:
        raise ValueError(f"k must be non-negative, got {k}")


def _server_ms(timeout_s: float) -> int:
    return max(1, int(timeout_s * _SERVER_SHARE * 1000))
