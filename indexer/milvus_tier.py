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

import math
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from indexer import stopwords
from indexer.errors import IndexUnavailable
from indexer.milvus_keys import filter_expr, ints_in, quoted, user_key
from indexer.milvus_schema import (
    RECORD_FIELDS,
    from_row,
    identity_row,
    meta_indexes,
    meta_schema,
    utterance_indexes,
    utterance_schema,
)
from indexer.models import PLAIN_BM25, Change, Filters, LexicalOptions
from indexer.records import DocRecord
from ranking.hits import Hits

if TYPE_CHECKING:
    from pymilvus import MilvusClient

_WORD = re.compile(r"[^\W_]+")
_STOP = frozenset(stopwords.ENGLISH)
#: Milvus answers at most this many rows per query
QUERY_LIMIT = 16_384
#: clauses OR-ed in one query (``query_any``)
OR_CHUNK = 8
#: the seq read from the cursor is reused this long (the searcher reads it twice a search)
SEQ_TTL_S = 0.05


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
    ) -> None:
        """``dense_index``: FLAT (exact), IVF_FLAT (``nlist`` lists, ``nprobe`` probed) or
        HNSW (``ef`` = max(k, ``nprobe``); Milvus Standalone and Distributed, not
        milvus-lite). ``consistency``: Milvus's level for reads ("Strong": a search sees every
        write acknowledged before it; "Bounded" is cheaper on a cluster). ``timeout_s`` caps
        every call that has no deadline of its own (writes, the cursor)."""
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
        self._seq = 0
        self._seq_read_at = -math.inf

    @classmethod
    def open(cls, client: MilvusClient, **kwargs: Any) -> MilvusTier:
        """The tier over ``client``, its collections created and loaded if missing."""
        tier = cls(client, **kwargs)
        tier.ensure_collections()
        return tier

    @property
    def client(self) -> MilvusClient:
        return self._client

    @property
    def timeout_s(self) -> float:
        return self._timeout_s

    def ensure_collections(self) -> None:
        c = self._client
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

    # -- the feed --------------------------------------------------------------------------

    @property
    def seq(self) -> int:
        now = time.monotonic()
        if now - self._seq_read_at > SEQ_TTL_S:
            self._seq = max(self._seq, self.stored_cursor())
            self._seq_read_at = now
        return self._seq

    def stored_cursor(self) -> int:
        rows = self.query(self.meta, 'key == "cursor"', ["seq"], timeout_s=self._timeout_s)
        return int(rows[0]["seq"]) if rows else 0

    def apply(self, changes: Sequence[Change]) -> int:
        from indexer.milvus_feed import apply_changes

        if not changes:
            return self.seq
        with remote("write"):
            apply_changes(self, changes)
        self._seq = max(self._seq, changes[-1].seq)
        self._seq_read_at = time.monotonic()
        return self._seq

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
        words = _WORD.findall(query.lower())
        if options.drop_stopwords:
            words = [w for w in words if w not in _STOP] or words
        names: set[str] = set()
        if options.speaker_weight > 0 and words:
            speakers = self.speakers(filters.tenant, filters.user_id)
            by_word = {w: s for s in speakers for w in _WORD.findall(s.lower())}
            named = {by_word[w] for w in words if w in by_word}
            if filters.speakers:
                named &= set(filters.speakers)
            names = named
            name_words = {w for s in names for w in _WORD.findall(s.lower())}
            words = [w for w in words if w not in name_words]
        if not words:
            return Hits.empty()
        field = "window_sparse" if options.key == "window" else "text_sparse"
        text = " ".join(words)
        expr = filter_expr(filters)
        scores = self._bm25(text, field, expr, k, timeout_s)
        if names:
            bonus = options.speaker_weight * math.log(2.0)
            scoped = f"{expr} and speaker_k in [{', '.join(quoted(s) for s in sorted(names))}]"
            for uid, s in self._bm25(text, field, scoped, k, timeout_s).items():
                scores[uid] = max(scores.get(uid, 0.0), s + bonus)
        return _ranked(scores, k)

    def _bm25(self, text: str, field: str, expr: str, k: int, timeout_s: float) -> dict[int, float]:
        with remote("BM25 search"):
            res = self._client.search(
                self.collection,
                data=[text],
                anns_field=field,
                limit=k,
                filter=expr,
                search_params={"metric_type": "BM25"},
                output_fields=["uid"],
                timeout=timeout_s,
                consistency_level=self._consistency,
            )
        return {int(h["id"]): float(h["distance"]) for h in res[0]}

    def search_dense(
        self, vector: npt.NDArray[np.float32], k: int, *, filters: Filters, timeout_s: float
    ) -> Hits:
        if k <= 0 or timeout_s <= 0:
            return Hits.empty()
        params: dict[str, Any] = {"metric_type": "IP"}
        if self._dense_index == "IVF_FLAT":
            params["params"] = {"nprobe": self._nprobe}
        elif self._dense_index == "HNSW":
            params["params"] = {"ef": max(k, self._nprobe)}
        with remote("dense search"):
            res = self._client.search(
                self.collection,
                data=[np.asarray(vector, dtype=np.float32).tolist()],
                anns_field="dense",
                limit=k,
                filter=filter_expr(filters),
                search_params=params,
                output_fields=["uid"],
                timeout=timeout_s,
                consistency_level=self._consistency,
            )
        hits = Hits(
            np.fromiter((int(h["id"]) for h in res[0]), np.int64),
            np.fromiter((float(h["distance"]) for h in res[0]), np.float32),
            exhaustive=self._dense_index == "FLAT",
        )
        return hits

    def speakers(self, tenant: str, user_id: str | None = None) -> list[str]:
        scope = "t" if user_id is None else "u" + user_key(user_id)
        rows = self.query(
            self.meta,
            f'tenant_k == {quoted(tenant)} and scope == "{scope}"',
            ["speaker"],
            timeout_s=self._timeout_s,
        )
        return sorted({str(r["speaker"]) for r in rows})

    def questions(self, uids: Iterable[int]) -> list[bool]:
        ids = [int(u) for u in uids]
        if not ids:
            return []
        rows = self.query(
            self.collection, f"{ints_in('uid', ids)} and is_question == true", ["uid"]
        )
        found = {int(r["uid"]) for r in rows}
        return [u in found for u in ids]

    def records(self, uids: Iterable[int]) -> list[DocRecord | None]:
        ids = [int(u) for u in uids]
        if not ids:
            return []
        by_uid = {
            int(r["uid"]): from_row(r)
            for r in self.query(self.collection, ints_in("uid", set(ids)), RECORD_FIELDS)
        }
        return [by_uid.get(u) for u in ids]

    def context_many(
        self, uids: Sequence[int], *, before: int, after: int
    ) -> dict[int, list[DocRecord]]:
        """Neighbours by turn number: the live turns within ``before``/``after`` + a margin
        of the hit's turn, ordered like ``IndexShard`` orders them (start time, turn, uid)."""
        hits = [r for r in self.records(uids) if r is not None]
        if not hits:
            return {}
        margin = 2 * max(before, after) + 2
        ranges = [
            f"(tenant_k == {quoted(r.tenant)} and conv_k == {quoted(r.conversation_id)}"
            f" and turn >= {r.turn - before - margin} and turn <= {r.turn + after + margin})"
            for r in hits
        ]
        rows = self.query_any(self.collection, ranges, RECORD_FIELDS)
        turns: dict[tuple[str, str], list[DocRecord]] = {}
        for rec in sorted((from_row(r) for r in rows), key=lambda d: d.order_key):
            turns.setdefault((rec.tenant, rec.conversation_id), []).append(rec)
        out: dict[int, list[DocRecord]] = {}
        for r in hits:
            conv = turns.get((r.tenant, r.conversation_id), [])
            i = next((j for j, d in enumerate(conv) if d.uid == r.uid), None)
            if i is None:
                continue  # deleted between the two reads
            out[r.uid] = conv[max(0, i - before) : i] + conv[i + 1 : i + 1 + after]
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


@contextmanager
def remote(what: str) -> Iterator[None]:
    """Milvus's failures (down, timed out, refused) as ``IndexUnavailable``: a 503 to a
    client, and a retry for the feed worker."""
    from pymilvus.exceptions import MilvusException

    try:
        yield
    except MilvusException as exc:
        raise IndexUnavailable(f"Milvus {what} failed: {exc.message}") from exc


def _ranked(scores: dict[int, float], k: int) -> Hits:
    if not scores:
        return Hits.empty()
    ids = np.fromiter(scores.keys(), np.int64, len(scores))
    vals = np.fromiter(scores.values(), np.float32, len(scores))
    order = np.lexsort((ids, -vals))[:k]
    return Hits(ids[order], vals[order])
