"""`IndexShard`: one process's searchable copy of the store (lexical + dense + documents).

It applies the change feed in ``seq`` order and records the ``seq`` it covers. Besides the two
indexes it keeps each live utterance's display fields and every conversation's turn order, so a
search is answered (hits and their neighbouring turns) without a round trip to PostgreSQL.

The records are held in columns (``indexer.record_table.RecordTable``): a `DocRecord` is built
only for what a search returns. Turn order is one sorted array of rows per conversation.
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from indexer.models import PLAIN_BM25, Change, Filters, IndexDoc, LexicalOptions, VectorRows
from indexer.protocols import BulkVectorIndex, LexicalIndex, PersistentLexicalIndex, VectorIndex
from indexer.record_table import ROLES, RecordColumns, RecordTable, columns_of
from indexer.records import DocRecord, record_of
from ranking.hits import Hits
from ranking.question_prior import is_question

__all__ = ["DocRecord", "IndexShard", "ShardExport"]

# The key of a tenant's speaker counts over all its users. No user id equals it: PostgreSQL
# text cannot hold a NUL character.
_ALL_USERS = "\x00all"
#: documents handed to an index at a time when a bulk load has to go through ``upsert``
_BATCH = 10_000


@dataclass(frozen=True, slots=True)
class ShardExport:
    """A consistent copy of a shard: the covered ``seq``, the live records (rows grouped by
    (tenant, user)), their vectors (rows aligned), and whether the lexical index's files
    were linked into the directory asked for."""

    seq: int
    records: RecordColumns
    vectors: npt.NDArray[np.float32]
    lexical_saved: bool


class IndexShard:
    """Thread-safe: one writer (the tailer) applies changes while many searches read."""

    remote = False

    def __init__(self, *, lexical: LexicalIndex, vector: VectorIndex) -> None:
        self.lexical = lexical
        self.vector = vector
        self._table = RecordTable()
        self._rows: dict[int, int] = {}  # live uid -> its row in the table
        self._turns: dict[int, npt.NDArray[np.int64]] = {}  # conversation code -> rows in order
        # live utterances per speaker name, per (tenant, user) and per tenant
        self._speakers: dict[tuple[str, str | None], Counter[str]] = {}
        self._seq = 0
        self._lock = threading.RLock()

    @property
    def seq(self) -> int:
        """The highest change-feed ``seq`` applied."""
        return self._seq

    def __len__(self) -> int:
        return len(self._rows)

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
        """Bulk-load documents (from a full scan) and set the covered ``seq``.

        The documents' context keys are filled in from the loaded turn order.
        """
        with self._lock:
            uids = np.fromiter((r.uid for r in records), np.int64, len(records))
            if not self._rows and len(np.unique(uids)) == len(records):
                cols = columns_of(records, [is_question(r.text) for r in records])
                self._table = RecordTable.from_columns(cols)
                before = self._index_table()
                rows, text = self._rows, self._table.text

                def context(uid: int) -> str:
                    row = rows.get(uid)
                    prev = -1 if row is None else int(before[row])
                    return text(prev) if prev >= 0 else ""

            else:
                for rec in records:
                    self._set_record(rec.uid, rec)
                context = self._previous_text
            keyed = [replace(doc, context=context(doc.uid)) for doc in docs]
            self.vector.upsert(keyed)
            self.lexical.upsert(keyed)
            self.lexical.refresh()
            self._seq = max(self._seq, seq)

    def restore(
        self,
        records: RecordColumns,
        vectors: npt.NDArray[np.float32],
        seq: int,
        *,
        lexical_dir: Path | None = None,
    ) -> None:
        """Fill an empty shard from a snapshot's records and vectors (rows aligned).

        With ``lexical_dir`` (what `export` linked) and a lexical index that can take it, the
        lexical index opens those files instead of indexing the texts again. Raises
        ValueError if the shard is not empty or the columns are inconsistent, before changing
        anything.
        """
        with self._lock:
            if self._rows or self._seq or len(self.vector) or len(self.lexical):
                raise ValueError("restore needs an empty shard")
            table = RecordTable.from_columns(records)
            n = table.n
            if vectors.ndim != 2 or vectors.shape[0] != n:
                raise ValueError(f"vectors {vectors.shape} do not match {n} records")
            if len(np.unique(table.col("uid"))) != n:
                raise ValueError("the records repeat a uid")
            reuse = lexical_dir is not None and isinstance(self.lexical, PersistentLexicalIndex)
            if reuse and isinstance(self.lexical, PersistentLexicalIndex):
                assert lexical_dir is not None  # for mypy: reuse says so
                self.lexical.restore_files(lexical_dir)
                if len(self.lexical) != n:
                    raise ValueError(f"lexical index holds {len(self.lexical)} docs, not {n}")
            self._table = table
            self._index_table()
            rows = self._vector_rows(vectors)
            if isinstance(self.vector, BulkVectorIndex):
                self.vector.load_rows(rows)
            else:
                for a in range(0, n, _BATCH):
                    self.vector.upsert(self._docs(range(a, min(a + _BATCH, n)), vectors))
            if not reuse:
                for a in range(0, n, _BATCH):
                    self.lexical.upsert(self._docs(range(a, min(a + _BATCH, n)), vectors))
                self.lexical.refresh()
            self._seq = seq

    def _docs(self, rows: Iterable[int], vectors: npt.NDArray[np.float32]) -> list[IndexDoc]:
        """Index documents of table rows (row i's vector is ``vectors[i]``), context keyed."""
        out = []
        for row in rows:
            rec = self._table.record(row)
            vec = np.asarray(vectors[row], dtype=np.float32)
            out.append(rec.index_doc(vec, self._previous_text(rec.uid)))
        return out

    def _vector_rows(self, vectors: npt.NDArray[np.float32]) -> VectorRows:
        t = self._table
        return VectorRows(
            uids=t.col("uid").astype(np.int64, copy=False),
            vectors=vectors,
            tenants=list(t.tenants.values),
            tenant=t.col("tenant").astype(np.int32, copy=False),
            users=list(t.users.values),
            user=t.col("user").astype(np.int32, copy=False),
            convs=[c for _, c in t.convs.values],
            conv=t.col("conv").astype(np.int32, copy=False),
            speakers=list(t.speakers.values),
            speaker=t.col("speaker").astype(np.int32, copy=False),
            roles=ROLES,
            role=t.col("role").astype(np.int8, copy=False),
            started=t.col("started").astype(np.float64, copy=False),
        )

    def _index_table(self) -> npt.NDArray[np.int64]:
        """The uid map, turn order and speaker counts of a table whose rows are all live.

        Returns each row's previous turn (a row number, -1 for a conversation's first).
        """
        t = self._table
        n = t.n
        uid, conv = t.col("uid"), t.col("conv")
        self._rows = dict(zip(uid.tolist(), range(n), strict=True))
        order = np.lexsort((uid, t.col("turn"), t.col("started"), conv)).astype(np.int64)
        by_conv = conv[order]
        cuts = np.flatnonzero(np.diff(by_conv)) + 1
        starts = np.concatenate([[0], cuts]) if n else np.empty(0, np.int64)
        self._turns = dict(
            zip(by_conv[starts].tolist(), np.split(order, cuts) if n else [], strict=True)
        )
        before = np.full(n, -1, np.int64)
        same = by_conv[1:] == by_conv[:-1]
        before[order[1:][same]] = order[:-1][same]
        self._speakers = {}
        tenant, user, speaker = t.col("tenant"), t.col("user"), t.col("speaker")
        for key_cols, all_users in (((speaker, user, tenant), False), ((speaker, tenant), True)):
            order = np.lexsort(key_cols)
            keys = np.stack([c[order] for c in key_cols])
            edges = np.flatnonzero(np.any(np.diff(keys, axis=1) != 0, axis=0)) + 1
            firsts = np.concatenate([[0], edges]) if n else np.empty(0, np.int64)
            counts = np.diff(np.concatenate([firsts, [n]]))
            for first, count in zip(firsts.tolist(), counts.tolist(), strict=True):
                row = int(order[first])
                name = t.tenants.values[int(tenant[row])]
                who = _ALL_USERS if all_users else t.users.values[int(user[row])]
                spk = t.speakers.values[int(speaker[row])]
                self._speakers.setdefault((name, who), Counter())[spk] = count
        return before

    def _row_turns(self, row: int) -> tuple[npt.NDArray[np.int64], int]:
        """The turn order of ``row``'s conversation and ``row``'s place in it (bisect left)."""
        t = self._table
        turns = self._turns.get(int(t.col("conv")[row]), _NO_ROWS)
        return turns, bisect.bisect_left(turns, t.order_key(row), key=self._order_key)

    def _live_turns(self, row: int) -> tuple[npt.NDArray[np.int64], int]:
        """`_row_turns` of a row already in its turn order: found by a scan of the order
        (one numpy comparison) rather than a bisect (a Python call per probe)."""
        turns = self._turns.get(int(self._table.col("conv")[row]), _NO_ROWS)
        if len(turns) <= _SCAN_TURNS:
            at = np.flatnonzero(turns == row)
            if at.size:
                return turns, int(at[0])
        return self._row_turns(row)

    def _order_key(self, row: np.int64) -> tuple[float, int, int]:
        return self._table.order_key(int(row))

    def _next_uid(self, uid: int) -> int | None:
        """The live turn after ``uid`` in its conversation, if any."""
        row = self._rows.get(uid)
        if row is None:
            return None
        turns, i = self._live_turns(row)
        return int(self._table.col("uid")[turns[i + 1]]) if i + 1 < len(turns) else None

    def _previous_text(self, uid: int) -> str:
        row = self._rows.get(uid)
        if row is None:
            return ""
        turns, i = self._live_turns(row)
        return self._table.text(int(turns[i - 1])) if i > 0 else ""

    def _rekeyed(self, uids: list[int]) -> list[IndexDoc]:
        """Lexical documents for live ``uids`` with their context keys read afresh."""
        live = [u for u in uids if u in self._rows]
        if not live:
            return []
        vectors = self.vector.vectors_for(live)
        return [
            self._table.record(self._rows[u]).index_doc(vectors[i], self._previous_text(u))
            for i, u in enumerate(live)
        ]

    def _set_record(self, uid: int, rec: DocRecord | None) -> None:
        old = self._rows.pop(uid, None)
        if old is not None:
            self._count_speaker(old, -1)
            turns, i = self._live_turns(old)
            if i < len(turns) and turns[i] == old:
                self._turns[int(self._table.col("conv")[old])] = np.delete(turns, i)
        if rec is not None:
            row = self._table.append(rec, is_question(rec.text))
            self._rows[uid] = row
            self._count_speaker(row, 1)
            turns, i = self._row_turns(row)
            self._turns[int(self._table.col("conv")[row])] = np.insert(turns, i, row)

    def _count_speaker(self, row: int, delta: int) -> None:
        t = self._table
        tenant = t.tenants.values[int(t.col("tenant")[row])]
        user = t.users.values[int(t.col("user")[row])]
        speaker = t.speakers.values[int(t.col("speaker")[row])]
        for key in ((tenant, user), (tenant, _ALL_USERS)):
            counts = self._speakers.setdefault(key, Counter())
            counts[speaker] += delta
            if counts[speaker] <= 0:
                del counts[speaker]

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
        rows, flags = self._rows, self._table.col("question").astype(bool, copy=False)
        at = np.fromiter((rows.get(int(u), -1) for u in uids), np.int64)
        if not flags.shape[0]:
            return [False] * at.shape[0]
        return list((flags[at] & (at >= 0)).tolist())

    def records(self, uids: Iterable[int]) -> list[DocRecord | None]:
        # Lock-free: rows are append-only and a table that grows copies what it holds first.
        rows = self._rows
        return self._table.records([rows.get(int(u)) for u in uids])

    def live_vectors(self, hits: Hits) -> tuple[Hits, npt.NDArray[np.float32]]:
        """The hits still live, in order, and their vectors (rows aligned), consistently."""
        with self._lock:
            keep = np.fromiter((int(u) in self._rows for u in hits.ids), bool, len(hits))
            live = Hits(hits.ids[keep], hits.scores[keep])
            return live, self.vector.vectors_for([int(u) for u in live.ids])

    def context(self, uid: int, *, before: int, after: int) -> list[DocRecord]:
        """The turns around ``uid`` in its conversation (excluding it), in order."""
        with self._lock:
            row = self._rows.get(uid)
            if row is None:
                return []
            turns, i = self._live_turns(row)
            window = [
                *turns[max(0, i - before) : i].tolist(),
                *turns[i + 1 : i + 1 + after].tolist(),
            ]
            return [r for r in self._table.records(window) if r is not None]

    def context_many(
        self, uids: Sequence[int], *, before: int, after: int
    ) -> dict[int, list[DocRecord]]:
        """``context`` of each live uid (``IndexTier.context_many``)."""
        out = {}
        with self._lock:
            for uid in uids:
                if int(uid) in self._rows:
                    out[int(uid)] = self.context(int(uid), before=before, after=after)
        return out

    def export(self, lexical_dir: Path | None = None) -> ShardExport:
        """A consistent copy of the live records and vectors at the covered ``seq``.

        With ``lexical_dir``, a lexical index that can (`PersistentLexicalIndex`) links its
        committed files there, under the same lock, so they hold exactly that ``seq``.
        """
        with self._lock:
            t = self._table
            live = np.fromiter(self._rows.values(), np.int64, len(self._rows))
            live.sort()
            rows = live[np.lexsort((live, t.col("user")[live], t.col("tenant")[live]))]
            records = t.columns(rows)
            uids = records.numeric["uid"].tolist()
            vectors = self.vector.vectors_for(uids) if uids else np.empty((0, 0), dtype=np.float32)
            saved = False
            if lexical_dir is not None and isinstance(self.lexical, PersistentLexicalIndex):
                self.lexical.save_files(lexical_dir)
                saved = True
            return ShardExport(self._seq, records, vectors, saved)


_NO_ROWS = np.empty(0, np.int64)
#: conversations up to this many turns find a turn by a scan, longer ones by a bisect
_SCAN_TURNS = 4096


def _to_doc(change: Change, embedding: npt.NDArray[np.float32]) -> tuple[IndexDoc, DocRecord]:
    rec = record_of(change)
    return rec.index_doc(embedding), rec
