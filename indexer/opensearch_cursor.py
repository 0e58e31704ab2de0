"""`FeedCursor`: how far the change feed has reached an OpenSearch index, stored beside it.

One small document per utterance index in the cursor index (``opensearch_mapping``): its
``seq``, written after each applied batch, so a feed worker resumes from it; and its
identity (the store and the vectors' model it was built from).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from indexer.errors import IndexUnavailable
from indexer.opensearch_client import DriverErrors
from indexer.opensearch_mapping import cursor_doc, identity_doc

if TYPE_CHECKING:
    from opensearchpy import OpenSearch

__all__ = ["FeedCursor"]

#: Writes that lost a race to another writer before this one gives up.
_ATTEMPTS = 5


class FeedCursor:
    """The stored ``seq`` of ``index``. `read` is cached for ``ttl_s`` (searches read it,
    through ``IndexTier.seq``, on every request). `write` never moves it back: it writes
    ``max(stored, seq)`` conditionally on the version it read (``if_seq_no``), so two
    workers racing cannot lower it; `reset` is the one way back to 0."""

    def __init__(
        self,
        *,
        client: OpenSearch,
        errors: DriverErrors,
        cursor_index: str,
        index: str,
        timeout_s: float,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._errors = errors
        self._cursor_index = cursor_index
        self._index = index
        self._params = {"request_timeout": timeout_s}
        self._ttl_s = ttl_s
        self._clock = clock
        self._cache: tuple[int, float] | None = None

    def read(self) -> int:
        cached = self._cache
        now = self._clock()
        if cached is not None and now - cached[1] < self._ttl_s:
            return cached[0]
        seq = self._stored()[0]
        self._cache = (seq, now)
        return seq

    def _get(self, doc_id: str) -> dict[str, object] | None:
        try:
            answer = self._client.get(index=self._cursor_index, id=doc_id, params=self._params)
        except self._errors.not_found:
            return None  # never written (or no cursor index yet)
        except self._errors.transport as exc:
            raise IndexUnavailable(f"OpenSearch cursor read failed: {exc}") from exc
        return dict(answer)

    def _stored(self) -> tuple[int, dict[str, object]]:
        """The stored seq, and the condition a write on top of it must meet."""
        answer = self._get(self._index)
        if answer is None:
            return 0, {"op_type": "create"}
        source = answer["_source"]
        seq = int(source["seq"]) if isinstance(source, dict) else 0
        return seq, {"if_seq_no": answer["_seq_no"], "if_primary_term": answer["_primary_term"]}

    def write(self, seq: int) -> int:
        """Store ``seq`` unless a higher one is stored; return the stored value."""
        for _ in range(_ATTEMPTS):
            stored, condition = self._stored()
            target = max(stored, seq)
            try:
                if target != stored or "op_type" in condition:
                    self._client.index(
                        index=self._cursor_index,
                        id=self._index,
                        body=cursor_doc(self._index, target),
                        params={**self._params, **condition},
                    )
            except self._errors.conflict:
                continue  # another writer moved it meanwhile: read it again
            except self._errors.transport as exc:
                raise IndexUnavailable(f"OpenSearch cursor write failed: {exc}") from exc
            self._cache = (target, self._clock())
            return target
        raise IndexUnavailable(f"the cursor of {self._index!r} is written by another worker")

    def reset(self) -> None:
        """Back to seq 0 (the index was emptied): the feed is applied again from the start."""
        params = {**self._params, "refresh": "true"}
        self._errors.call(
            lambda: self._client.index(
                index=self._cursor_index,
                id=self._index,
                body=cursor_doc(self._index, 0),
                params=params,
            ),
            "cursor reset",
        )
        self._cache = (0, self._clock())

    def identity(self) -> str | None:
        answer = self._get(f"{self._index}/identity")
        source = answer.get("_source") if answer is not None else None
        found = source.get("identity") if isinstance(source, dict) else None
        return found if isinstance(found, str) else None

    def set_identity(self, identity: str) -> None:
        body = identity_doc(self._index, identity)
        doc_id = f"{self._index}/identity"
        index = self._client.index
        self._errors.call(
            lambda: index(index=self._cursor_index, id=doc_id, body=body, params=self._params),
            "identity write",
        )
