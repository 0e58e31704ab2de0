"""The OpenSearch tier's calls to the cluster: set-up, searches, lookups and writes.

The feed's cursor is in ``indexer.opensearch_cursor``.

``opensearchpy`` is imported by `DriverErrors.load`, when a tier is built, never when this
module is imported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from indexer.errors import IndexUnavailable
from indexer.opensearch_bulk import bulk_failures
from indexer.opensearch_lookups import by_uids
from indexer.opensearch_mapping import EMBEDDING, UID, Body, cursor_index_body, hybrid_pipeline
from indexer.opensearch_requests import MAX_PAGE, search_routing
from indexer.opensearch_responses import sources

if TYPE_CHECKING:
    from opensearchpy import OpenSearch

__all__ = ["DriverErrors", "IndexCalls", "ensure_indexes", "ensure_pipeline"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class DriverErrors:
    """The driver's exception classes, caught at the tier's boundary."""

    transport: type[Exception]  # any failed request (ConnectionError is one)
    timeout: type[Exception]
    not_found: type[Exception]
    conflict: type[Exception]

    @classmethod
    def load(cls) -> DriverErrors:
        from opensearchpy import exceptions

        return cls(
            transport=exceptions.TransportError,
            timeout=exceptions.ConnectionTimeout,
            not_found=exceptions.NotFoundError,
            conflict=exceptions.ConflictError,
        )

    def call(self, fn: Callable[[], T], what: str) -> T:
        """``fn()``, with a driver error turned into `IndexUnavailable`."""
        try:
            return fn()
        except self.transport as exc:
            raise IndexUnavailable(f"OpenSearch {what} failed: {exc}") from exc


def ensure_indexes(
    client: OpenSearch,
    errors: DriverErrors,
    *,
    index: str,
    body: Body,
    dim: int,
    cursor_index: str,
    timeout_s: float,
) -> None:
    """Create the utterance index (``body``) and the cursor index if missing (idempotent).

    An existing index made for vectors of another dimension is refused: a new embedding
    model needs a new index, filled from the store, and an alias switched to it.
    """
    params = {"request_timeout": timeout_s}

    def create(name: str, settings: Body) -> bool:
        if client.indices.exists(index=name, params=params):
            return False
        try:
            client.indices.create(index=name, body=settings, params=params)
        except errors.transport as exc:
            if "resource_already_exists" not in str(exc):
                raise
            return False  # another process made it meanwhile
        return True

    errors.call(lambda: create(cursor_index, cursor_index_body()), "index creation")
    if errors.call(lambda: create(index, body), "index creation"):
        return
    answer = errors.call(lambda: client.indices.get_mapping(index=index, params=params), "mapping")
    for mapping in dict(answer).values():  # keyed by the concrete index behind an alias
        have = mapping["mappings"]["properties"][EMBEDDING]["dimension"]
        if have != dim:
            raise IndexUnavailable(
                f"OpenSearch index {index!r} holds {have}-d vectors, the embedder makes "
                f"{dim}-d: fill a new index and point the alias at it"
            )


def ensure_pipeline(
    client: OpenSearch,
    errors: DriverErrors,
    *,
    name: str,
    weights: Sequence[float],
    timeout_s: float,
) -> None:
    """Create or replace the search pipeline ``name`` that ``OpenSearchTier.search_hybrid``
    uses: min-max normalisation, then a mean weighted by ``weights`` (lexical, dense)."""
    body = hybrid_pipeline(weights)
    params = {"request_timeout": timeout_s}
    put = client.search_pipeline.put
    errors.call(lambda: put(id=name, body=body, params=params), "search pipeline")


class IndexCalls:
    """The tier's requests to one index, each with its timeout, routing and errors mapped.

    A driver error becomes `IndexUnavailable`; only `timed_search` treats a client-side
    timeout apart (None: a search that ran out of time has seen nothing).
    """

    def __init__(
        self, *, client: OpenSearch, errors: DriverErrors, index: str, timeout_s: float
    ) -> None:
        self._client = client
        self._errors = errors
        self._index = index
        self._timeout_s = timeout_s

    def search(self, body: Body, tenant: str | None) -> Mapping[str, object]:
        """A search routed to ``tenant``'s shard (None: every shard)."""
        params = self._params(None if tenant is None else search_routing(tenant))
        search = self._client.search
        return self._errors.call(
            lambda: search(index=self._index, body=body, params=params), "search"
        )

    def timed_search(
        self, body: Body, tenant: str, timeout_s: float, *, pipeline: str | None = None
    ) -> Mapping[str, object] | None:
        """A search that waits at most ``timeout_s``; None if no answer came in time."""
        params = self._params(search_routing(tenant), request_timeout=max(timeout_s, 0.001))
        if pipeline is not None:
            params["search_pipeline"] = pipeline
        try:
            answer: Mapping[str, object] = self._client.search(
                index=self._index, body=body, params=params
            )
        except self._errors.timeout:
            return None
        except self._errors.transport as exc:
            raise IndexUnavailable(f"OpenSearch search failed: {exc}") from exc
        return answer

    def by_uid(self, uids: Iterable[int], fields: Sequence[str]) -> dict[int, Mapping[str, object]]:
        """The stored ``fields`` of each live uid among ``uids`` (pages of `MAX_PAGE`)."""
        distinct = sorted({int(u) for u in uids})
        found: dict[int, Mapping[str, object]] = {}
        for start in range(0, len(distinct), MAX_PAGE):
            answer = self.search(by_uids(distinct[start : start + MAX_PAGE], fields), None)
            for source in sources(answer):
                found[int(str(source[UID]))] = source
        return found

    def msearch(self, lines: list[Body]) -> list[Mapping[str, object]]:
        """The answers of an ``msearch`` body, in order; a failed search raises."""
        params = self._params(None)
        msearch = self._client.msearch
        answer = self._errors.call(lambda: msearch(body=lines, params=params), "msearch")
        responses: list[Mapping[str, object]] = answer["responses"]
        for response in responses:
            if "error" in response:
                raise IndexUnavailable(f"OpenSearch search failed: {response['error']}")
        return responses

    def bulk(self, lines: list[Body]) -> None:
        """A ``_bulk`` request that returns once its writes are visible (``wait_for``)."""
        params = self._params(None, refresh="wait_for")
        answer = self._errors.call(lambda: self._client.bulk(body=lines, params=params), "bulk")
        failures = bulk_failures(answer)
        if failures:
            raise IndexUnavailable(
                f"OpenSearch bulk write failed for {len(failures)} action(s): {failures[0]}"
            )

    def count(self) -> int:
        """The documents (live utterances) the index holds."""
        params = self._params(None)
        count = self._client.count
        return int(
            self._errors.call(lambda: count(index=self._index, params=params), "count")["count"]
        )

    def delete_all(self) -> None:
        """Delete every document, visible once this returns."""
        params = self._params(None, refresh="true", conflicts="proceed")
        body: Body = {"query": {"match_all": {}}}
        delete = self._client.delete_by_query
        self._errors.call(lambda: delete(index=self._index, body=body, params=params), "delete")

    def _params(self, routing: str | None, **extra: object) -> dict[str, object]:
        params: dict[str, object] = {"request_timeout": self._timeout_s, **extra}
        if routing is not None:
            params["routing"] = routing
        return params
