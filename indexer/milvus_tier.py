"""`MilvusTier`: the index tier on Milvus (``IndexTier``), over an injected ``MilvusClient``.

A replica on this tier holds no corpus: BM25 (Milvus's BM25 function over the text and the
window key), dense search, records, neighbouring turns and speakers are all asked of Milvus.
One change-feed worker writes (``apply``, via ``indexer.milvus_feed``), any number of
replicas read. The feed's cursor is stored in the same Milvus (``<collection>_meta``), so a
worker resumes where the last one stopped, and a Milvus that lost its data also lost its
cursor and is rebuilt from ``seq`` 0 rather than silently missing documents.

The ranking stages that need the whole index (tantivy's speaker routing by document
frequency) are approximated: see ``search_lexical``. Everything else the searcher does on top
(fusion, neighbours, question and time priors, reranking) runs unchanged.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from indexer import stopwords
from indexer.errors import IndexTimeout, IndexUnavailable
from indexer.milvus_keys import (
    TURN_BITS,
    conv_turn,
    filter_expr,
    ints_in,
    named_expr,
    quoted,
    user_key,
)
from indexer.milvus_memo import ReadMemo, Row
from indexer.milvus_schema import (
    LIGHT_FIELDS,
    ROW_FIELDS,
    from_row,
    identity_row,
    light,
    meta_indexes,
    meta_schema,
    utterance_indexes,
    utterance_schema,
)
from indexer.models import PLAIN_BM25, Change, Filters, LexicalOptions
from indexer.records import DocRecord
from indexer.tier import HybridFusion
from ranking.hits import Hits

if TYPE_CHECKING:
    from pymilvus import MilvusClient

_log = logging.getLogger(__name__)
_WORD = re.compile(r"[^\W_]+")
_STOP = frozenset(stopwords.ENGLISH)
#: Milvus answers at most this many rows per query
QUERY_LIMIT = 16_384
#: clauses OR-ed in one query (``query_any``)
OR_CHUNK = 8
#: ``ct`` keys in one ``ct in [...]`` query (``read_spans``)
CT_CHUNK = 4096
_TURN_MASK = (1 << TURN_BITS) - 1
#: turns read beyond a hit's span each side: the served context of a neighbour that spreading
#: lifts into the results is then already read (one read per search, not two)
PREFETCH_TURNS = 4
#: the seq read from the cursor is reused this long (the searcher reads it twice a search);
#: past it, a read starts one in the background and answers the last one read, up to
#: ``SEQ_WAIT_S`` old: past that (an idle tier) it reads the cursor before answering
SEQ_TTL_S = 0.05
SEQ_WAIT_S = 0.5


def connect(uri: str, *, token: str = "", timeout_s: float = 10.0) -> MilvusClient:
    """A client with a connection of its own. pymilvus shares one connection between the
    clients of a uri by default, so closing any of them cut off the others in the process
    (two apps in a test, a bench beside a service)."""
    import uuid

    from pymilvus import MilvusClient

    return MilvusClient(
        uri=uri, token=token, timeout=timeout_s, alias=f"convmem-{uuid.uuid4().hex}"
    )


class MilvusTier:
    remote = True

    def __init__(
        self,
        client: MilvusClient,
        *,
        collection: str,
        dim: int,
        partition_key: bool = False,
        dense_index: str = "FLAT",
        nlist: int = 1024,
        nprobe: int = 32,
        consistency: str = "Strong",
        timeout_s: float = 10.0,
        read_by_search: bool | None = None,
    ) -> None:
        """``dense_index``: FLAT (exact), IVF_FLAT (``nlist`` lists, ``nprobe`` probed) or
        HNSW (``ef`` = max(k, ``nprobe``); Milvus Standalone and Distributed, not
        milvus-lite). ``consistency``: Milvus's level for reads ("Strong": a search sees every
        write acknowledged before it; "Bounded" is cheaper on a cluster). ``timeout_s`` caps
        every call that has no deadline of its own (writes, the cursor). ``read_by_search``:
        read rows of the utterance collection with a filtered search instead of a query
        (``query``); default on for FLAT, the only index whose filtered search scores every
        row the filter admits."""
        self._client = client
        self.collection = collection
        self.meta = f"{collection}_meta"
        self.dim = dim
        self._partition_key = partition_key
        self._dense_index = dense_index
        self._nlist = nlist
        self._nprobe = nprobe
        self._consistency = consistency
        self._timeout_s = timeout_s
        self._read_by_search = dense_index == "FLAT" if read_by_search is None else read_by_search
        if self._read_by_search and dense_index != "FLAT":
            raise ValueError("read_by_search needs dense_index FLAT: an ANN search can miss rows")
        self._seq = 0
        self._seq_read_at = -math.inf
        self._seq_reading = False
        self._memo = ReadMemo()
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()  # the reader pool and the cursor read

    @classmethod
    def open(
        cls, client: MilvusClient, *, recreate_stale: bool = False, **kwargs: Any
    ) -> MilvusTier:
        """The tier over ``client``, its collections created and loaded if missing; one of
        an older schema is recreated (empty, so the feed rebuilds it) if ``recreate_stale``
        (the feed worker), refused otherwise (a replica cannot rebuild it)."""
        tier = cls(client, **kwargs)
        tier.ensure_collections(recreate_stale=recreate_stale)
        return tier

    @property
    def client(self) -> MilvusClient:
        return self._client

    @property
    def timeout_s(self) -> float:
        return self._timeout_s

    @property
    def read_by_search(self) -> bool:
        """Whether rows are read by an exact filtered search (``_search_read``)."""
        return self._read_by_search

    def ensure_collections(self, *, recreate_stale: bool = False) -> None:
        c = self._client
        missing = self.missing_fields()
        if missing:
            if not recreate_stale:
                raise IndexUnavailable(
                    f"Milvus collection {self.collection} has an older schema (no"
                    f" {', '.join(missing)}): a feed worker (CONVMEM_INDEX__FEED=true) recreates"
                    " it and rebuilds it from the store"
                )
            _log.warning(
                "Milvus collection %s has an older schema (no %s): recreating it",
                self.collection,
                ", ".join(missing),
            )
            self.drop()
            self._memo.clear()
        if not c.has_collection(self.collection, timeout=self._timeout_s):
            c.create_collection(
                self.collection,
                schema=utterance_schema(self.dim, partition_key=self._partition_key),
                index_params=utterance_indexes(c, dense_index=self._dense_index, nlist=self._nlist),
                consistency_level=self._consistency,
                timeout=self._timeout_s,
            )
        if not c.has_collection(self.meta, timeout=self._timeout_s):
            c.create_collection(
                self.meta,
                schema=meta_schema(),
                index_params=meta_indexes(c),
                consistency_level=self._consistency,
                timeout=self._timeout_s,
            )
        for name in (self.collection, self.meta):
            c.load_collection(name, timeout=self._timeout_s)

    def missing_fields(self) -> list[str]:
        """The fields this version needs that the existing collection lacks ([] if none, or
        if there is no collection yet)."""
        c = self._client
        if not c.has_collection(self.collection, timeout=self._timeout_s):
            return []
        with remote("describe"):
            found = c.describe_collection(self.collection, timeout=self._timeout_s)
        have = {str(f["name"]) for f in found.get("fields", [])}
        need = utterance_schema(self.dim, partition_key=self._partition_key).fields
        return [f.name for f in need if f.name not in have]

    def drop(self) -> None:
        """Delete both collections (tests, and ``convmem`` rebuilding a tier from scratch)."""
        for name in (self.collection, self.meta):
            self._client.drop_collection(name, timeout=self._timeout_s)

    def identity(self) -> str | None:
        """What the tier was built from (``set_identity``), None if never said."""
        rows = self.query(self.meta, 'key == "identity"', ["value"])
        return str(rows[0]["value"]) if rows else None

    def set_identity(self, identity: str) -> None:
        """Record what the tier is built from: the store's identity and the vectors' model.
        A feed worker that finds another one rebuilds the tier from ``seq`` 0."""
        with remote("write"):
            self._client.upsert(self.meta, [identity_row(identity)], timeout=self._timeout_s)

    def __len__(self) -> int:
        return self.count()

    def clear(self) -> None:
        """Delete every row, cursor included (an empty tier at ``seq`` 0)."""
        self._client.delete(self.collection, filter="uid >= 0", timeout=self._timeout_s)
        self._client.delete(self.meta, filter='key != ""', timeout=self._timeout_s)
        self._seq, self._seq_read_at = 0, -math.inf
        self._memo.clear()

    # -- the feed --------------------------------------------------------------------------

    @property
    def seq(self) -> int:
        """The feed's cursor. A busy replica never waits for it in a search: when the last
        read is over ``SEQ_TTL_S`` old a background read refreshes it, so a search's first
        look starts the round trip beside its retrievals instead of in front of the turns'
        read. Only a cursor over ``SEQ_WAIT_S`` old is read before answering."""
        age = time.monotonic() - self._seq_read_at
        if age > SEQ_WAIT_S:
            self._read_seq()
        elif age > SEQ_TTL_S:
            self._read_seq_soon()
        return self._seq

    def _read_seq(self) -> None:
        at = time.monotonic()
        stored = self.stored_cursor()
        with self._lock:
            self._seq = max(self._seq, stored)
            self._seq_read_at = max(self._seq_read_at, at)

    def _read_seq_soon(self) -> None:
        with self._lock:
            if self._seq_reading:
                return
            self._seq_reading = True

        def read() -> None:
            try:
                self._read_seq()
            except IndexUnavailable:  # the next look tries again; a search reports it
                _log.debug("reading the Milvus cursor failed", exc_info=True)
            finally:
                self._seq_reading = False

        self._readers().submit(read)

    def stored_cursor(self) -> int:
        rows = self.query(self.meta, 'key == "cursor"', ["seq"], timeout_s=self._timeout_s)
        return int(rows[0]["seq"]) if rows else 0

    def apply(self, changes: Sequence[Change]) -> int:
        from indexer.milvus_feed import apply_changes

        if not changes:
            return self.seq
        self._memo.clear()  # the feed reads the rows as stored
        with remote("write"):
            apply_changes(self, changes)
        self._seq = max(self._seq, changes[-1].seq)
        self._seq_read_at = time.monotonic()
        self._memo.clear()  # rows read while the batch was written may predate it
        return self._seq

    def _fresh(self) -> ReadMemo:
        """The read memo, emptied if the feed moved on since it was filled."""
        self._memo.at(self.seq)
        return self._memo

    # -- reads -----------------------------------------------------------------------------

    def search_lexical(
        self,
        query: str,
        k: int,
        *,
        filters: Filters,
        timeout_s: float,
        options: LexicalOptions = PLAIN_BM25,
    ) -> Hits:
        """BM25 on Milvus. ``drop_stopwords`` and speaker routing are done on the query text:
        a word that names a speaker of the scope leaves the text query, and that speaker's
        turns get ``speaker_weight`` x the name's BM25 weight in a two-speaker scope
        (``ln 2``, the idf of a name on half the turns) on top of their text score. tantivy
        reads the idf from its index; Milvus does not expose it, hence the estimate."""
        if k <= 0 or timeout_s <= 0:
            return Hits.empty()
        text, names = self.lexical_terms(query, filters, options)
        if not text:
            return Hits.empty()
        field = "window_sparse" if options.key == "window" else "text_sparse"
        expr = filter_expr(filters)
        if not names:
            return _ranked(self._bm25(text, field, expr, k, timeout_s), k)
        bonus = options.speaker_weight * math.log(2.0)
        scoped = named_expr(expr, names)
        # the two round trips at once: the named speaker's turns, and everyone's
        theirs = self._readers().submit(self._bm25, text, field, scoped, k, timeout_s)
        scores = self._bm25(text, field, expr, k, timeout_s)
        for uid, s in theirs.result().items():
            scores[uid] = max(scores.get(uid, 0.0), s + bonus)
        return _ranked(scores, k)

    def lexical_terms(
        self, query: str, filters: Filters, options: LexicalOptions
    ) -> tuple[str, frozenset[str]]:
        """The BM25 text of ``query`` (stopwords out if asked, the words that name a speaker
        of the scope out if routing is on) and the speakers it names."""
        words = _WORD.findall(query.lower())
        if options.drop_stopwords:
            words = [w for w in words if w not in _STOP] or words
        names: set[str] = set()
        if options.speaker_weight > 0 and words:
            speakers = self.speakers(filters.tenant, filters.user_id)
            by_word = {w: s for s in speakers for w in _WORD.findall(s.lower())}
            names = {by_word[w] for w in words if w in by_word}
            if filters.speakers:
                names &= set(filters.speakers)
            name_words = {w for s in names for w in _WORD.findall(s.lower())}
            words = [w for w in words if w not in name_words]
        return " ".join(words), frozenset(names)

    def search_fused(
        self,
        query: str,
        vector: npt.NDArray[np.float32],
        k: int,
        *,
        filters: Filters,
        dense_filters: Filters,
        timeout_s: float,
        options: LexicalOptions,
        fusion: HybridFusion,
    ) -> Hits:
        """BM25 (turn and window keys) and dense fused by Milvus in one ``hybrid_search``
        (``indexer.milvus_fused``)."""
        from indexer.milvus_fused import search_fused

        if k <= 0 or timeout_s <= 0:
            return Hits.empty()
        text, names = self.lexical_terms(query, filters, options)
        memo = self._fresh()
        with remote("hybrid search"):
            hits, lights = search_fused(
                self._client,
                self.collection,
                text=text,
                names=names,
                vector=vector,
                k=k,
                filters=filters,
                dense_filters=dense_filters,
                timeout_s=timeout_s,
                fusion=fusion,
                dense_params=self._dense_params(k),
                consistency=self._consistency,
            )
        memo.put_light(lights)
        return Hits(hits.ids, hits.scores, exhaustive=self._dense_index == "FLAT")

    def _readers(self) -> ThreadPoolExecutor:
        """Threads for round trips a read makes at once (started on first use)."""
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="milvus-read")
            return self._pool

    def _bm25(self, text: str, field: str, expr: str, k: int, timeout_s: float) -> dict[int, float]:
        memo = self._fresh()
        found = self._search(
            "BM25 search", text, field, k, expr, {"metric_type": "BM25"}, LIGHT_FIELDS, timeout_s
        )
        memo.put_light(light(h) for h in found)
        return {int(h["id"]): float(h["distance"]) for h in found}

    def search_dense(
        self, vector: npt.NDArray[np.float32], k: int, *, filters: Filters, timeout_s: float
    ) -> Hits:
        if k <= 0 or timeout_s <= 0:
            return Hits.empty()
        params = self._dense_params(k)
        memo = self._fresh()
        data = np.asarray(vector, dtype=np.float32).tolist()
        expr = filter_expr(filters)
        found = self._search(
            "dense search", data, "dense", k, expr, params, LIGHT_FIELDS, timeout_s
        )
        memo.put_light(light(h) for h in found)
        return Hits(
            np.fromiter((int(h["id"]) for h in found), np.int64),
            np.fromiter((float(h["distance"]) for h in found), np.float32),
            exhaustive=self._dense_index == "FLAT",
        )

    def _dense_params(self, k: int) -> dict[str, Any]:
        params: dict[str, Any] = {"metric_type": "IP"}
        if self._dense_index == "IVF_FLAT":
            params["params"] = {"nprobe": self._nprobe}
        elif self._dense_index == "HNSW":
            params["params"] = {"ef": max(k, self._nprobe)}
        return params

    def speakers(self, tenant: str, user_id: str | None = None) -> list[str]:
        scope = "t" if user_id is None else "u" + user_key(user_id)
        memo = self._fresh()
        held = memo.speakers(tenant, scope)
        if held is not None:
            return list(held)
        rows = self.query(
            self.meta,
            f'tenant_k == {quoted(tenant)} and scope == "{scope}"',
            ["speaker"],
            timeout_s=self._timeout_s,
        )
        found = sorted({str(r["speaker"]) for r in rows})
        memo.put_speakers(tenant, scope, found)
        return list(found)

    def questions(self, uids: Iterable[int]) -> list[bool]:
        ids = [int(u) for u in uids]
        memo = self._fresh()
        flags = {u: light[1] for u in ids if (light := memo.light(u)) is not None}
        rows = self._rows([u for u in ids if u not in flags])
        return [flags[u] if u in flags else u in rows and rows[u].is_question for u in ids]

    def records(self, uids: Iterable[int]) -> list[DocRecord | None]:
        ids = [int(u) for u in uids]
        rows = self._rows(ids)
        return [rows[u].record if u in rows else None for u in ids]

    def _rows(self, uids: Sequence[int]) -> dict[int, Row]:
        """The live rows of ``uids``: from the memo, the rest in one round trip."""
        if not uids:
            return {}
        memo = self._fresh()
        found, missing = memo.rows(uids)
        if missing:
            read = [
                _row(r) for r in self.query(self.collection, ints_in("uid", missing), ROW_FIELDS)
            ]
            memo.put_rows(read)
            found.update((r.record.uid, r) for r in read)
        return found

    def context_many(
        self, uids: Sequence[int], *, before: int, after: int
    ) -> dict[int, list[DocRecord]]:
        """Neighbours by turn number: the live turns within ``before``/``after`` + a margin
        of the hit's turn, ordered like ``IndexShard`` orders them (start time, turn, uid).

        The turns around every hit are one ``ct in [...]`` read (``milvus_keys.conv_turn``),
        the hit's own row among them, so a hit a search returned costs no read of its own;
        turns already read at this ``seq`` are not read again (``ReadMemo.span``), and each
        read takes ``PREFETCH_TURNS`` more each side for the next ask."""
        memo = self._fresh()
        margin = max(before, after) + 2
        ids = list(dict.fromkeys(int(u) for u in uids))
        where: dict[int, int] = {}
        for uid in ids:
            light = memo.light(uid)
            if light is not None:
                where[uid] = light[0]
        unknown = [u for u in ids if u not in where]
        if unknown:  # not from a search: its row first
            where.update((u, row.ct) for u, row in self._rows(unknown).items())
        spans: dict[int, tuple[int, int]] = {}
        far: list[int] = []
        for uid, ct in where.items():
            turn = ct & _TURN_MASK
            base = ct - turn
            hi = turn + after + margin
            if ct < 0 or hi >= 1 << TURN_BITS:
                far.append(uid)
            else:
                spans[uid] = (base + max(0, turn - before - margin), base + hi)
        todo = sorted(
            _widened(span)
            for span in set(spans.values())
            if memo.span(*span, bits=TURN_BITS) is None
        )
        if todo:
            keys = sorted({k for lo, hi in todo for k in range(lo, hi + 1)})
            read = [
                _row(r)
                for i in range(0, len(keys), CT_CHUNK)
                for r in self.query(
                    self.collection, ints_in("ct", keys[i : i + CT_CHUNK]), ROW_FIELDS
                )
            ]
            memo.put_rows(read)
            for lo, hi in todo:
                memo.put_span(lo, hi, read, bits=TURN_BITS)
        out: dict[int, list[DocRecord]] = {}
        for uid, span in spans.items():
            rows = memo.span(*span, bits=TURN_BITS)
            if rows is None:  # dropped from a full memo since: read it the slow way
                far.append(uid)
                continue
            me = next((r.record for r in rows if r.record.uid == uid), None)
            if me is None:
                continue  # deleted since the search found it
            conv = sorted(
                (
                    r.record
                    for r in rows
                    if (r.record.tenant, r.record.conversation_id)
                    == (me.tenant, me.conversation_id)
                ),
                key=lambda d: d.order_key,
            )
            i = conv.index(me)
            out[uid] = conv[max(0, i - before) : i] + conv[i + 1 : i + 1 + after]
        if far:
            hits = [r for r in self.records(far) if r is not None]
            out.update(self._around(hits, before=before, after=after))
        return out

    def _around(
        self, hits: Sequence[DocRecord], *, before: int, after: int
    ) -> dict[int, list[DocRecord]]:
        margin = 2 * max(before, after) + 2
        spans: dict[tuple[str, str], list[tuple[int, int]]] = {}
        for r in hits:
            lo, hi = r.turn - before - margin, r.turn + after + margin
            spans.setdefault((r.tenant, r.conversation_id), []).append((lo, hi))
        read = [_row(r) for r in self.read_spans(spans, ROW_FIELDS)]
        self._memo.put_rows(read)
        turns: dict[tuple[str, str], list[DocRecord]] = {}
        for row in sorted(read, key=lambda x: x.record.order_key):
            rec = row.record
            turns.setdefault((rec.tenant, rec.conversation_id), []).append(rec)
        out: dict[int, list[DocRecord]] = {}
        for r in hits:
            lo, hi = r.turn - before - margin, r.turn + after + margin
            conv = [d for d in turns.get((r.tenant, r.conversation_id), []) if lo <= d.turn <= hi]
            i = next((j for j, d in enumerate(conv) if d.uid == r.uid), None)
            if i is None:
                continue  # deleted between the two reads
            out[r.uid] = conv[max(0, i - before) : i] + conv[i + 1 : i + 1 + after]
        return out

    def read_spans(
        self, spans: dict[tuple[str, str], list[tuple[int, int]]], fields: list[str]
    ) -> list[dict[str, Any]]:
        """The live rows of each ``(tenant, conversation_id)`` whose turn lies in one of its
        ``(lo, hi)`` spans (inclusive). Spans within ``[0, 2**TURN_BITS)`` are read by
        their ``ct`` keys, in one round trip per ``CT_CHUNK`` keys; others by a range each.
        Rows of another conversation that shares the hash are dropped here."""
        want = [*fields, "tenant", "conversation_id", "turn"]
        keys: set[int] = set()
        ranges: list[str] = []
        for (tenant, conv), parts in spans.items():
            base = conv_turn(tenant, conv, 0)
            for lo, hi in parts:
                lo = max(lo, 0)
                if hi >= 1 << TURN_BITS or lo > hi:
                    ranges.append(
                        f"(tenant_k == {quoted(tenant)} and conv_k == {quoted(conv)}"
                        f" and turn >= {lo} and turn <= {hi})"
                    )
                else:
                    keys.update(range(base + lo, base + hi + 1))
        rows = self.query_any(self.collection, ranges, want) if ranges else []
        ordered = sorted(keys)
        for i in range(0, len(ordered), CT_CHUNK):
            rows += self.query(self.collection, ints_in("ct", ordered[i : i + CT_CHUNK]), want)
        seen: set[int] = set()
        out: list[dict[str, Any]] = []
        for row in rows:
            uid, turn = int(row["uid"]), int(row["turn"])
            parts = spans.get((str(row["tenant"]), str(row["conversation_id"])), [])
            if uid not in seen and any(lo <= turn <= hi for lo, hi in parts):
                seen.add(uid)
                out.append(row)
        return out

    def live_vectors(self, hits: Hits) -> tuple[Hits, npt.NDArray[np.float32]]:
        ids = [int(u) for u in hits.ids]
        rows = self.query(self.collection, ints_in("uid", ids), ["uid", "dense"]) if ids else []
        vec = {int(r["uid"]): np.asarray(r["dense"], dtype=np.float32) for r in rows}
        keep = np.fromiter((u in vec for u in ids), bool, len(ids))
        live = Hits(hits.ids[keep], hits.scores[keep], hits.exhaustive)
        if not len(live):
            return live, np.empty((0, self.dim), dtype=np.float32)
        return live, np.stack([vec[int(u)] for u in live.ids])

    def count(self, filters: Filters | None = None) -> int:
        """Live utterances (within ``filters``)."""
        return self.count_where(filter_expr(filters) if filters is not None else "uid >= 0")

    def count_where(self, expr: str, *, consistency: str | None = None) -> int:
        """Rows of the utterance collection matching ``expr``."""
        with remote("count"):
            rows = self._client.query(
                self.collection,
                filter=expr,
                output_fields=["count(*)"],
                timeout=self._timeout_s,
                consistency_level=consistency or self._consistency,
            )
        return int(rows[0]["count(*)"])

    def query_any(
        self, collection: str, clauses: Sequence[str], fields: list[str]
    ) -> list[dict[str, Any]]:
        """The rows matching any of ``clauses``, OR-ed ``OR_CHUNK`` at a time: Milvus refuses
        a long chain of ORs ("unsupported expr proto node", seen at 35 conversations)."""
        out: list[dict[str, Any]] = []
        for i in range(0, len(clauses), OR_CHUNK):
            out.extend(self.query(collection, " or ".join(clauses[i : i + OR_CHUNK]), fields))
        return out

    def query(
        self, collection: str, expr: str, fields: list[str], *, timeout_s: float | None = None
    ) -> list[dict[str, Any]]:
        """Every row matching ``expr`` (past Milvus's 16,384 rows a query, by an iterator)."""
        timeout = self._timeout_s if timeout_s is None else timeout_s
        if self._read_by_search and collection == self.collection:
            found = self._search_read(expr, fields, timeout)
            if len(found) < QUERY_LIMIT:
                return found
        with remote("query"):
            rows = self._client.query(
                collection,
                filter=expr,
                output_fields=fields,
                limit=QUERY_LIMIT,
                timeout=timeout,
                consistency_level=self._consistency,
            )
            if len(rows) < QUERY_LIMIT:
                return list(rows)
            it = self._client.query_iterator(
                collection, batch_size=4096, filter=expr, output_fields=fields, timeout=timeout
            )
            out: list[dict[str, Any]] = []
            try:
                while batch := it.next():
                    out.extend(batch)
            finally:
                it.close()
            return out

    def _search(
        self,
        what: str,
        data: Any,
        field: str,
        limit: int,
        expr: str,
        params: dict[str, Any],
        fields: list[str],
        timeout: float,
    ) -> list[dict[str, Any]]:
        """The hits of one search of the utterance collection (one query: ``data``)."""
        with remote(what):
            res = self._client.search(
                self.collection,
                data=[data],
                anns_field=field,
                limit=limit,
                filter=expr,
                search_params=params,
                output_fields=fields,
                timeout=timeout,
                consistency_level=self._consistency,
            )
        return list(res[0])

    def _search_read(self, expr: str, fields: list[str], timeout: float) -> list[dict[str, Any]]:
        """The rows matching ``expr`` (up to ``QUERY_LIMIT``) as one exact (FLAT) search with
        ``expr`` as its filter: a FLAT search scores every row the filter admits, so with a
        limit above their number it returns them all. milvus-lite answers that in a third to
        a half of a query's time (a one-row read at 100k rows: 3.2 against 11.5 ms; 40 turns:
        5.5 against 13.4 ms; docs/SCALING.md), as every read there is a scan."""
        probe = [1.0] + [0.0] * (self.dim - 1)
        found = self._search(
            "read", probe, "dense", QUERY_LIMIT, expr, {"metric_type": "IP"}, fields, timeout
        )
        out: list[dict[str, Any]] = []
        for hit in found:
            row = dict(hit["entity"])
            row.setdefault("uid", int(hit["id"]))
            out.append(row)
        return out


@contextmanager
def remote(what: str) -> Iterator[None]:
    """Milvus's failures (down, timed out, refused) as ``IndexUnavailable``: a 503 to a
    client, and a retry for the feed worker. gRPC's own errors too: pymilvus passes some
    through unwrapped (``DEADLINE_EXCEEDED`` from ``MilvusClient.search``)."""
    import grpc
    from pymilvus.exceptions import MilvusException

    try:
        yield
    except MilvusException as exc:
        if "timeout" in str(exc.message).lower():  # pymilvus: "Retry timeout: ...s"
            raise IndexTimeout(f"Milvus {what} timed out: {exc.message}") from exc
        raise IndexUnavailable(f"Milvus {what} failed: {exc.message}") from exc
    except grpc.RpcError as exc:  # pymilvus lets some through (a deadline inside search)
        code = exc.code() if isinstance(exc, grpc.Call) else None
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            raise IndexTimeout(f"Milvus {what} timed out") from exc
        name = code.name if code is not None else type(exc).__name__
        raise IndexUnavailable(f"Milvus {what} failed: {name}") from exc


def _ranked(scores: dict[int, float], k: int) -> Hits:
    if not scores:
        return Hits.empty()
    ids = np.fromiter(scores.keys(), np.int64, len(scores))
    vals = np.fromiter(scores.values(), np.float32, len(scores))
    order = np.lexsort((ids, -vals))[:k]
    return Hits(ids[order], vals[order])


def _widened(span: tuple[int, int]) -> tuple[int, int]:
    """``span`` and ``PREFETCH_TURNS`` more turns each side, within its conversation's keys."""
    lo, hi = span
    base = lo - (lo & _TURN_MASK)
    return max(base, lo - PREFETCH_TURNS), min(base + _TURN_MASK, hi + PREFETCH_TURNS)


def _row(entity: dict[str, Any]) -> Row:
    return Row(from_row(entity), bool(entity["is_question"]), int(entity["ct"]))
