"""An LRU cache in front of any ``Embedder``'s ``embed_query`` (queries repeat; documents not)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from indexer.protocols import Embedder


class CachedEmbedder:
    """Wraps an ``Embedder``: ``embed_query`` is memoised by exact text, ``embed_batch`` is not.

    Thread-safe. Cached vectors are read-only arrays, so a caller cannot corrupt the cache;
    copy one before writing to it. Two threads missing on the same text both compute it once.
    """

    def __init__(self, inner: Embedder, *, max_entries: int = 4096) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be positive, got {max_entries}")
        self.inner = inner
        self._max_entries = max_entries
        self._entries: OrderedDict[str, npt.NDArray[np.float32]] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    @property
    def dim(self) -> int:
        return self.inner.dim

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    @property
    def hits(self) -> int:
        return self._hits

    @property
    def misses(self) -> int:
        return self._misses

    def __len__(self) -> int:
        return len(self._entries)

    def embed_query(self, text: str) -> npt.NDArray[np.float32]:
        with self._lock:
            vector = self._entries.get(text)
            if vector is not None:
                self._entries.move_to_end(text)
                self._hits += 1
                return vector
            self._misses += 1
        vector = np.array(self.inner.embed_query(text), dtype=np.float32, copy=True)
        vector.setflags(write=False)
        with self._lock:
            self._entries[text] = vector
            self._entries.move_to_end(text)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
        return vector

    def embed_batch(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        return self.inner.embed_batch(texts)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
