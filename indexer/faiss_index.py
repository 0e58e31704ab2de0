"""`FaissVectorIndex`: exact scoped inner-product search, with FAISS HNSW past a size threshold.

Layout: one `Partition` per (tenant, user_id). Most queries are scoped to one user, and a
partition is contiguous, so the exact search is a single BLAS matrix-vector product over just
that user's rows — no gather, no scan of other users (recall 1.0). A tenant-wide query visits
the tenant's partitions. Replaced and deleted documents are tombstones (dead rows).

ANN: a partition whose rows exceed ``ann_threshold`` gets a FAISS ``IndexHNSWFlat`` (inner
product), built off the query path by ``maybe_build_ann()`` (the tailer calls it). Searches
use it with an ``IDSelectorBitmap`` for filters and tombstones and search rows appended since
the build exactly, then merge. Threshold measured on this 2-core machine (docs/BENCHMARKS.md):
exact search of 100k rows × 384 dims takes a few ms, so the default keeps partitions exact up
to 200k rows and ANN is for the largest memories only.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from itertools import repeat

import numpy as np
import numpy.typing as npt

from indexer.models import Filters, IndexDoc, VectorRows
from indexer.vector_partition import ROLE_CODE, Codes, Partition
from ranking.hits import Hits

DEFAULT_ANN_THRESHOLD = 200_000
#: Rows scored between two looks at the clock: 16k x 384 fp32 is 25 MB, about 2-3 ms here.
SCAN_CHUNK_ROWS = 16_384
_Key = tuple[str, str | None]


class _Ann:
    """An HNSW graph over a partition's first ``n`` rows (row number = FAISS id)."""

    def __init__(self, part: Partition, m: int, ef_search: int) -> None:
        import faiss

        self.n = part.n
        self.index = faiss.IndexHNSWFlat(part.dim, m, faiss.METRIC_INNER_PRODUCT)
        self.index.add(np.ascontiguousarray(part.vecs[: part.n]))
        self.ef_search = ef_search

    def search(
        self, part: Partition, q: npt.NDArray[np.float32], k: int, mask: npt.NDArray[np.bool_]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        import faiss

        bitmap = np.packbits(mask[: self.n], bitorder="little")
        params = faiss.SearchParametersHNSW(  # type: ignore[attr-defined]  # missing from stubs
            sel=faiss.IDSelectorBitmap(self.n, faiss.swig_ptr(bitmap)),
            efSearch=max(self.ef_search, 2 * k),
        )
        dist, rows = self.index.search(q.reshape(1, -1), k, params=params)
        ok = rows[0] >= 0
        rows_ok = rows[0][ok]
        ids, scores = part.uids[rows_ok], dist[0][ok].astype(np.float32)
        tail = np.arange(self.n, part.n)[mask[self.n : part.n]]  # appended after the build
        if tail.size:
            ids = np.concatenate([ids, part.uids[tail]])
            scores = np.concatenate([scores, part.vecs[tail] @ q])
        return ids, scores


class FaissVectorIndex:
    def __init__(
        self,
        *,
        dim: int = 384,
        ann_threshold: int = DEFAULT_ANN_THRESHOLD,
        hnsw_m: int = 32,
        ef_search: int = 128,
        scan_chunk_rows: int = SCAN_CHUNK_ROWS,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if dim <= 0 or ann_threshold <= 0 or scan_chunk_rows <= 0:
            raise ValueError("dim, ann_threshold and scan_chunk_rows must be positive")
        self._chunk = scan_chunk_rows
        self._clock = clock
        self._dim = dim
        self._ann_threshold = ann_threshold
        self._hnsw_m = hnsw_m
        self._ef_search = ef_search
        self._parts: dict[_Key, Partition] = {}
        self._by_tenant: dict[str, list[_Key]] = {}
        self._where: dict[int, tuple[_Key, int]] = {}
        self._ann: dict[_Key, _Ann] = {}
        self._convs = Codes()
        self._speakers = Codes()
        self._lock = threading.RLock()

    @property
    def dim(self) -> int:
        return self._dim

    def __len__(self) -> int:
        return len(self._where)

    def upsert(self, docs: Sequence[IndexDoc]) -> None:
        for d in docs:
            if d.embedding.shape != (self._dim,):
                raise ValueError(
                    f"uid {d.uid}: vector shape {d.embedding.shape}, want ({self._dim},)"
                )
        with self._lock:
            for d in docs:
                self._remove(d.uid)
                key = (d.tenant, d.user_id)
                part = self._parts.get(key)
                if part is None:
                    part = self._parts[key] = Partition(self._dim)
                    self._by_tenant.setdefault(d.tenant, []).append(key)
                row = part.append(
                    d, self._convs.code(d.conversation_id), self._speakers.code(d.speaker)
                )
                self._where[d.uid] = (key, row)

    def load_rows(self, rows: VectorRows) -> None:
        """Fill this empty index from columns, one partition per (tenant, user) group.

        Rows already grouped by (tenant, user) (as a snapshot writes them) become partitions
        that are views of ``rows.vectors``, with no copy; otherwise they are gathered first.
        """
        n = rows.uids.shape[0]
        if rows.vectors.shape != (n, self._dim):
            raise ValueError(f"vectors {rows.vectors.shape}, want ({n}, {self._dim})")
        with self._lock:
            if self._where:
                raise ValueError("load_rows needs an empty index")
            if n == 0:
                return
            key = rows.tenant.astype(np.int64) * (len(rows.users) + 1) + rows.user
            order: npt.NDArray[np.int64] | None = None
            if np.any(np.diff(key) < 0):
                order = np.argsort(key, kind="stable")
                key = key[order]
            conv_lut = np.array([self._convs.code(c) for c in rows.convs] or [0], np.int32)
            spk_lut = np.array([self._speakers.code(c) for c in rows.speakers] or [0], np.int32)
            role_lut = np.array([ROLE_CODE[r] for r in rows.roles] or [0], np.int8)
            cuts = np.flatnonzero(np.diff(key)) + 1
            bounds = zip(np.concatenate([[0], cuts]).tolist(), [*cuts.tolist(), n], strict=True)
            for a, b in bounds:
                sel = slice(a, b) if order is None else order[a:b]
                first = a if order is None else int(order[a])
                part_key = (
                    rows.tenants[int(rows.tenant[first])],
                    rows.users[int(rows.user[first])],
                )
                uids = np.ascontiguousarray(rows.uids[sel], dtype=np.int64)
                part = Partition.of_rows(
                    np.ascontiguousarray(rows.vectors[sel], dtype=np.float32),
                    uids,
                    conv=conv_lut[rows.conv[sel]],
                    speaker=spk_lut[rows.speaker[sel]],
                    role=role_lut[rows.role[sel]],
                    started=np.asarray(rows.started[sel], dtype=np.float64),
                )
                if part_key in self._parts:
                    raise ValueError(f"rows of partition {part_key} are not contiguous")
                self._parts[part_key] = part
                self._by_tenant.setdefault(part_key[0], []).append(part_key)
                self._where.update(
                    zip(uids.tolist(), zip(repeat(part_key), range(b - a)), strict=True)
                )
            if len(self._where) != n:
                self._parts.clear()
                self._by_tenant.clear()
                self._where.clear()
                raise ValueError("the rows repeat a uid")

    def delete(self, uids: Sequence[int]) -> None:
        with self._lock:
            for uid in uids:
                self._remove(int(uid))

    def _remove(self, uid: int) -> None:
        where = self._where.pop(uid, None)
        if where is not None:
            self._parts[where[0]].kill(where[1])

    def search(
        self, vector: npt.NDArray[np.float32], k: int, *, filters: Filters, timeout_s: float
    ) -> Hits:
        """The ``k`` best live rows in scope, best first (ties by uid).

        The exact scan works through the scope in chunks of ``scan_chunk_rows`` and looks at
        the clock between chunks: once ``timeout_s`` has passed it stops and returns the best
        of what it has scored, with ``exhaustive=False``. The first chunk always runs.
        """
        if vector.shape != (self._dim,):
            raise ValueError(f"query vector shape {vector.shape}, want ({self._dim},)")
        if k <= 0 or timeout_s <= 0:
            return Hits.empty()
        q = np.ascontiguousarray(vector, dtype=np.float32)
        give_up_at = self._clock() + timeout_s
        plain = not (filters.conversation_ids or filters.speakers or filters.roles)
        plain = plain and filters.since is None and filters.until is None
        id_parts: list[npt.NDArray[np.int64]] = []
        score_parts: list[npt.NDArray[np.float32]] = []
        exhaustive = True
        with self._lock:
            keys = (
                [(filters.tenant, filters.user_id)]
                if filters.user_id is not None
                else list(self._by_tenant.get(filters.tenant, ()))
            )
            for key in keys:
                part = self._parts.get(key)
                if part is None or part.live_count == 0:
                    continue
                if id_parts and self._clock() >= give_up_at:
                    exhaustive = False
                    break
                mask = None if plain else part.mask(filters, self._convs, self._speakers)
                ann = self._ann.get(key)
                if ann is not None:
                    m = part.live[: part.n] if mask is None else mask
                    ids, scores = ann.search(part, q, k, m)
                    id_parts.append(ids)
                    score_parts.append(scores)
                    continue
                for start in range(0, part.n, self._chunk):
                    if id_parts and self._clock() >= give_up_at:
                        exhaustive = False
                        break
                    ids, scores = part.exact(q, mask, k, start, start + self._chunk)
                    id_parts.append(ids)
                    score_parts.append(scores)
                if not exhaustive:
                    break
        if not id_parts:
            return Hits.empty()
        ids = np.concatenate(id_parts)
        scores = np.concatenate(score_parts).astype(np.float32)
        if ids.size > k:
            top = np.argpartition(-scores, k - 1)[:k]
            # keep every tie with the k-th score so the uid tie-break is exact
            kth = scores[top].min()
            top = np.flatnonzero(scores >= kth)
            ids, scores = ids[top], scores[top]
        order = np.lexsort((ids, -scores))[:k]
        return Hits(ids[order].astype(np.int64), scores[order], exhaustive)

    def vectors_for(self, uids: Sequence[int]) -> npt.NDArray[np.float32]:
        with self._lock:
            out = np.empty((len(uids), self._dim), dtype=np.float32)
            for i, uid in enumerate(uids):
                where = self._where.get(int(uid))
                if where is None:
                    raise KeyError(f"no live vector for uid {uid}")
                out[i] = self._parts[where[0]].vecs[where[1]]
            return out

    def maybe_build_ann(self) -> int:
        """Build or rebuild HNSW graphs for partitions past the threshold; returns how many.

        Rebuilds when a quarter of a graph's rows are new or dead. Runs outside the lock
        (reads a consistent prefix of rows) and swaps the graph in under it.
        """
        built = 0
        for key, part in list(self._parts.items()):
            if part.n < self._ann_threshold:
                continue
            ann = self._ann.get(key)
            stale = ann is None or (part.n - ann.n) + (ann.n - part.live_count) > part.n // 4
            if stale:
                graph = _Ann(part, self._hnsw_m, self._ef_search)
                with self._lock:
                    self._ann[key] = graph
                built += 1
        return built
