"""`IndexShard`: one process's searchable copy of the store (lexical + dense + documents).

It applies the change feed in ``seq`` order and records the ``seq`` it covers. Besides the two
indexes it keeps each live utterance's display fields and every conversation's turn order, so a
search is answered (hits and their neighbouring turns) without a round trip to PostgreSQL.
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import replace

import numpy as np
import numpy.typing as npt

from indexer.models import PLAIN_BM25, Change, Filters, IndexDoc, LexicalOptions
from indexer.protocols import LexicalIndex, VectorIndex
from indexer.records import DocRecord, record_of
from ranking.hits import Hits
from ranking.question_prior import is_question

__all__ = ["DocRecord", "IndexShard"]

# The key of a tenant's speaker counts over all its users. No user id equals it: PostgreSQL
# text cannot hold a NUL character.
_ALL_USERS = "\x00all"


class IndexShard:
    """Thread-safe: one writer (the tailer) applies changes while many searches read."""

    remote = False

    def __init__(self, *, lexical: LexicalIndex, vector: VectorIndex) -> None:
        self.lexical = lexical
        self.vector = vector
        self._docs: dict[int, DocRecord] = {}
        self._turns: dict[tuple[str, str], list[tuple[float, int, int]]] = {}
        # live utterances per speaker name, per (tenant, user) and per tenant
        self._speakers: dict[tuple[str, str | None], Counter[str]] = {}
        self._questions: set[int] = set()  # live utterances that are questions
        self._seq = 0
        self._lock = threading.RLock()

    @property
    def seq(self) -> int:
        """The highest change-feed ``seq`` applied."""
        return self._seq

    def __len__(self) -> int:
        return len(self._docs)

    def apply(self, changes: Sequence[Change]) -> int:
        """Apply changes (in ``seq`` order) to every index; return the covered ``seq``.

        Each document's context key (``IndexDoc.context``) is the text of the turn before it,
        read from the turn order once the batch is applied. A turn whose previous turn changed
        (inserted before it, edited or deleted) is re-keyed in the lexical index too, so a
        deleted utterance's words leave the index entirely.
        """
        if not changes:
            return self._seq
        upserts: dict[int, IndexDoc] = {}
        deletes: set[int] = set()
        records: dict[int, DocRecord | None] = {}
        for change in changes:
            if change.deleted or change.embedding is None:
                deletes.add(change.uid)
                upserts.pop(change.uid, None)
                records[change.uid] = None
            else:
                doc, record = _to_doc(change, change.embedding)
                upserts[change.uid] = doc
                deletes.discard(change.uid)
                records[change.uid] = record
        with self._lock:
            followers = {self._next_uid(uid) for uid in records}  # under the old order
            for uid, rec in records.items():
                self._set_record(uid, rec)
            followers |= {self._next_uid(uid) for uid in upserts}  # under the new order
            docs = [replace(doc, context=self._previous_text(uid)) for uid, doc in upserts.items()]
            rekeyed = self._rekeyed(
                sorted(u for u in followers if u is not None and u not in records)
            )
            if deletes:
                self.lexical.delete(sorted(deletes))
                self.vector.delete(sorted(deletes))
            if docs:
                self.vector.upsert(docs)
            if docs or rekeyed:
                self.lexical.upsert(docs + rekeyed)
            self.lexical.refresh()
            self._seq = max(self._seq, changes[-1].seq)
        return self._seq

    def load(self, docs: Sequence[IndexDoc], records: Sequence[DocRecord], seq: int) -> None:
        """Bulk-load documents (from a snapshot or a full scan) and set the covered ``seq``.

        The documents' context keys are filled in from the loaded turn order.
        """
        with self._lock:
            for rec in records:
                self._set_record(rec.uid, rec)
            keyed = [replace(doc, context=self._previous_text(doc.uid)) for doc in docs]
            self.vector.upsert(keyed)
            self.lexical.upsert(keyed)
            self.lexical.refresh()
            self._seq = max(self._seq, seq)

    def _next_uid(self, uid: int) -> int | None:
        """The live turn after ``uid`` in its conversation, if any."""
        rec = self._docs.get(uid)
        if rec is None:
            return None
        turns = self._turns.get((rec.tenant, rec.conversation_id), [])
        i = bisect.bisect_right(turns, rec.order_key)
        return turns[i][2] if i < len(turns) else None

    def _previous_text(self, uid: int) -> str:
        before = self.context(uid, before=1, after=0)
        return before[0].text if before else ""

    def _rekeyed(self, uids: list[int]) -> list[IndexDoc]:
        """Lexical documents for live ``uids`` with their context keys read afresh."""
        live = [self._docs[u] for u in uids if u in self._docs]
        if not live:
            return []
        vectors = self.vector.vectors_for([r.uid for r in live])
        return [r.index_doc(vectors[i], self._previous_text(r.uid)) for i, r in enumerate(live)]

    def _set_record(self, uid: int, rec: DocRecord | None) -> None:
        self._questions.discard(uid)
        if rec is not None and is_question(rec.text):
            self._questions.add(uid)
        old = self._docs.pop(uid, None)
        if old is not None:
            for key in ((old.tenant, old.user_id), (old.tenant, _ALL_USERS)):
                counts = self._speakers[key]
                counts[old.speaker] -= 1
                if counts[old.speaker] <= 0:
                    del counts[old.speaker]
            turns = self._turns.get((old.tenant, old.conversation_id))
            if turns is not None:
                i = bisect.bisect_left(turns, old.order_key)
                if i < len(turns) and turns[i] == old.order_key:
                    del turns[i]
        if rec is not None:
            self._docs[uid] = rec
            for key in ((rec.tenant, rec.user_id), (rec.tenant, _ALL_USERS)):
                self._speakers.setdefault(key, Counter())[rec.speaker] += 1
            bisect.insort(
                self._turns.setdefault((rec.tenant, rec.conversation_id), []), rec.order_key
            )

    # -- reads --------------------------------------------------------------------------

    def search_lexical(
        self,
        query: str,
        k: int,
        *,
        filters: Filters,
        timeout_s: float,
        options: LexicalOptions = PLAIN_BM25,
    ) -> Hits:
        return self.lexical.search(query, k, filters=filters, timeout_s=timeout_s, options=options)

    def search_dense(
        self, vector: npt.NDArray[np.float32], k: int, *, filters: Filters, timeout_s: float
    ) -> Hits:
        return self.vector.search(vector, k, filters=filters, timeout_s=timeout_s)

    def speakers(self, tenant: str, user_id: str | None = None) -> list[str]:
        """The speakers of the live utterances of ``user_id`` (None: of the whole tenant)."""
        with self._lock:
            counts = self._speakers.get((tenant, _ALL_USERS if user_id is None else user_id))
            return sorted(counts) if counts else []

    def questions(self, uids: Iterable[int]) -> list[bool]:
        """Whether each utterance is a question (``ranking.is_question``, read at apply time)."""
        questions = self._questions
        return [int(u) in questions for u in uids]

    def records(self, uids: Iterable[int]) -> list[DocRecord | None]:
        docs = self._docs
        return [docs.get(int(u)) for u in uids]

    def live_vectors(self, hits: Hits) -> tuple[Hits, npt.NDArray[np.float32]]:
        """The hits still live, in order, and their vectors (rows aligned), consistently."""
        with self._lock:
            keep = np.fromiter((int(u) in self._docs for u in hits.ids), bool, len(hits))
            live = Hits(hits.ids[keep], hits.scores[keep])
            return live, self.vector.vectors_for([int(u) for u in live.ids])

    def context(self, uid: int, *, before: int, after: int) -> list[DocRecord]:
        """The turns around ``uid`` in its conversation (excluding it), in order."""
        with self._lock:
            rec = self._docs.get(uid)
            if rec is None:
                return []
            turns = self._turns.get((rec.tenant, rec.conversation_id), [])
            i = bisect.bisect_left(turns, rec.order_key)
            window = turns[max(0, i - before) : i] + turns[i + 1 : i + 1 + after]
            return [self._docs[key[2]] for key in window if key[2] in self._docs]

    def context_many(
        self, uids: Sequence[int], *, before: int, after: int
    ) -> dict[int, list[DocRecord]]:
        """``context`` of each live uid (``IndexTier.context_many``)."""
        out = {}
        with self._lock:
            for uid in uids:
                if int(uid) in self._docs:
                    out[int(uid)] = self.context(int(uid), before=before, after=after)
        return out

    def export(self) -> tuple[int, list[DocRecord], npt.NDArray[np.float32]]:
        """A consistent copy: the covered ``seq``, the live records and their vectors (rows)."""
        with self._lock:
            records = list(self._docs.values())
            if not records:
                return self._seq, [], np.empty((0, 0), dtype=np.float32)
            return self._seq, records, self.vector.vectors_for([r.uid for r in records])


def _to_doc(change: Change, embedding: npt.NDArray[np.float32]) -> tuple[IndexDoc, DocRecord]:
    rec = record_of(change)
    return rec.index_doc(embedding), rec
