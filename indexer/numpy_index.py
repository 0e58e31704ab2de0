"""`NumpyVectorIndex`: exact inner-product search in plain numpy — the reference VectorIndex.

Small and obviously correct: a dict of live documents, scanned with one matrix product per
search. It is the oracle the FAISS index is checked against (same contract tests), and a fine
index for laptops and tests up to tens of thousands of utterances.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from indexer.models import Filters, IndexDoc
from ranking.hits import Hits


class NumpyVectorIndex:
    def __init__(self, *, dim: int = 384) -> None:
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        self._dim = dim
        self._docs: dict[int, IndexDoc] = {}
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:
        return self._dim

    def upsert(self, docs: Sequence[IndexDoc]) -> None:
        for d in docs:
            if d.embedding.shape != (self._dim,):
                raise ValueError(
                    f"uid {d.uid}: vector shape {d.embedding.shape}, want ({self._dim},)"
                )
        with self._lock:
            for d in docs:
                self._docs[d.uid] = d

    def delete(self, uids: Sequence[int]) -> None:
        with self._lock:
            for uid in uids:
                self._docs.pop(int(uid), None)

    def search(
        self, vector: npt.NDArray[np.float32], k: int, *, filters: Filters, timeout_s: float
    ) -> Hits:
        if vector.shape != (self._dim,):
            raise ValueError(f"query vector shape {vector.shape}, want ({self._dim},)")
        if k <= 0 or timeout_s <= 0:
            return Hits.empty()
        with self._lock:
            docs = [d for d in self._docs.values() if filters.matches(d)]
        if not docs:
            return Hits.empty()
        ids = np.fromiter((d.uid for d in docs), np.int64, len(docs))
        scores = np.stack([d.embedding for d in docs]).astype(np.float32) @ vector.astype(
            np.float32
        )
        order = np.lexsort((ids, -scores))[:k]
        return Hits(ids[order], scores[order].astype(np.float32))

    def vectors_for(self, uids: Sequence[int]) -> npt.NDArray[np.float32]:
        with self._lock:
            missing = [u for u in uids if int(u) not in self._docs]
            if missing:
                raise KeyError(f"no live vectors for uids {missing[:5]}")
            if not uids:
                return np.empty((0, self._dim), dtype=np.float32)
            return np.stack([self._docs[int(u)].embedding for u in uids]).astype(np.float32)

    def __len__(self) -> int:
        return len(self._docs)
