"""`IndexShard`: one process's searchable copy of the store (lexical + dense + documents).

It applies the change feed in ``seq`` order and records the ``seq`` it covers. Besides the two
indexes it keeps each live utterance's display fields and every conversation's turn order, so a
search is answered (hits and their neighbouring turns) without a round trip to PostgreSQL.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt

from indexer.models import PLAIN_BM25, Change, Filters, IndexDoc, LexicalOptions, Role
from indexer.protocols import LexicalIndex, VectorIndex
from ranking.hits import Hits


@dataclass(frozen=True, slots=True)
class DocRecord:
    """What a search returns about one utterance."""

    uid: int
    tenant: str
    id: str
    conversation_id: str
    user_id: str | None
    turn: int
    speaker: str
    role: Role
    text: str
    started_at: datetime

    @property
    def order_key(self) -> tuple[float, int, int]:
        return (self.started_at.timestamp(), self.turn, self.uid)


class IndexShard:
    """Thread-safe: one writer (the tailer) applies changes while many searches read."""

    def __init__(self, *, lexical: LexicalIndex, vector: VectorIndex) -> None:
        self.lexical = lexical
        self.vector = vector
        self._docs: dict[int, DocRecord] = {}
        self._turns: dict[tuple[str, str], list[tuple[float, int, int]]] = {}
        self._seq = 0
        self._lock = threading.RLock()

    @property
    def seq(self) -> int:
        """The highest change-feed ``seq`` applied."""
        return self._seq

    def __len__(self) -> int:
        return len(self._docs)

    def apply(self, changes: Sequence[Change]) -> int:
        """Apply changes (in ``seq`` order) to every index; return the covered ``seq``."""
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
            if deletes:
                self.lexical.delete(sorted(deletes))
                self.vector.delete(sorted(deletes))
            if upserts:
                docs = list(upserts.values())
                self.lexical.upsert(docs)
                self.vector.upsert(docs)
            self.lexical.refresh()
            for uid, rec in records.items():
                self._set_record(uid, rec)
            self._seq = max(self._seq, changes[-1].seq)
        return self._seq

    def load(self, docs: Sequence[IndexDoc], records: Sequence[DocRecord], seq: int) -> None:
        """Bulk-load documents (from a snapshot or a full scan) and set the covered ``seq``."""
        with self._lock:
            self.vector.upsert(docs)
            self.lexical.upsert(docs)
            self.lexical.refresh()
            for rec in records:
                self._set_record(rec.uid, rec)
            self._seq = max(self._seq, seq)

    def _set_record(self, uid: int, rec: DocRecord | None) -> None:
        old = self._docs.pop(uid, None)
        if old is not None:
            turns = self._turns.get((old.tenant, old.conversation_id))
            if turns is not None:
                i = bisect.bisect_left(turns, old.order_key)
                if i < len(turns) and turns[i] == old.order_key:
                    del turns[i]
        if rec is not None:
            self._docs[uid] = rec
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

    def export(self) -> tuple[int, list[DocRecord], npt.NDArray[np.float32]]:
        """A consistent copy: the covered ``seq``, the live records and their vectors (rows)."""
        with self._lock:
            records = list(self._docs.values())
            if not records:
                return self._seq, [], np.empty((0, 0), dtype=np.float32)
            return self._seq, records, self.vector.vectors_for([r.uid for r in records])


def _to_doc(change: Change, embedding: npt.NDArray[np.float32]) -> tuple[IndexDoc, DocRecord]:
    u = change.utterance
    doc = IndexDoc(
        uid=change.uid,
        tenant=u.tenant,
        user_id=u.user_id,
        conversation_id=u.conversation_id,
        speaker=u.speaker,
        role=u.role,
        started_at=u.started_at.timestamp(),
        text=u.text,
        embedding=embedding,
    )
    rec = DocRecord(
        uid=change.uid,
        tenant=u.tenant,
        id=u.id,
        conversation_id=u.conversation_id,
        user_id=u.user_id,
        turn=u.turn,
        speaker=u.speaker,
        role=u.role,
        text=u.text,
        started_at=u.started_at,
    )
    return doc, rec
