"""`Partition`: one (tenant, user) block of the vector index — contiguous rows + filter columns.

Rows are appended (a replaced or deleted document leaves a dead row behind); the block doubles
its capacity as it grows, so an exact scoped search is one contiguous matrix-vector product.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from indexer.models import Filters, IndexDoc, Role

ROLE_CODE = {Role.USER: 0, Role.AGENT: 1, Role.OTHER: 2}
_ROLE_CODE = ROLE_CODE


class Codes:
    """A string dictionary: str -> small int, shared by every partition of an index."""

    def __init__(self) -> None:
        self._codes: dict[str, int] = {}

    def code(self, value: str) -> int:
        return self._codes.setdefault(value, len(self._codes))

    def lookup(self, values: tuple[str, ...]) -> npt.NDArray[np.int32]:
        """Codes of known values (unknown ones cannot match anything)."""
        return np.array([self._codes[v] for v in values if v in self._codes], dtype=np.int32)


class Partition:
    def __init__(self, dim: int, capacity: int = 256) -> None:
        self.dim = dim
        self.n = 0
        self.live_count = 0
        self.vecs = np.zeros((capacity, dim), dtype=np.float32)
        self.uids = np.zeros(capacity, dtype=np.int64)
        self.live = np.zeros(capacity, dtype=bool)
        self.conv = np.zeros(capacity, dtype=np.int32)
        self.speaker = np.zeros(capacity, dtype=np.int32)
        self.role = np.zeros(capacity, dtype=np.int8)
        self.started = np.zeros(capacity, dtype=np.float64)

    @classmethod
    def of_rows(
        cls,
        vecs: npt.NDArray[np.float32],
        uids: npt.NDArray[np.int64],
        *,
        conv: npt.NDArray[np.int32],
        speaker: npt.NDArray[np.int32],
        role: npt.NDArray[np.int8],
        started: npt.NDArray[np.float64],
    ) -> Partition:
        """A full partition of live rows, adopting the arrays (``vecs`` may be a read-only
        view: the first append copies every column into a larger block)."""
        n = uids.shape[0]
        part = cls(vecs.shape[1], capacity=0)
        part.n = part.live_count = n
        part.vecs, part.uids = vecs, uids
        part.live = np.ones(n, dtype=bool)
        part.conv, part.speaker, part.role, part.started = conv, speaker, role, started
        return part

    def append(self, doc: IndexDoc, conv_code: int, speaker_code: int) -> int:
        if self.n == self.vecs.shape[0]:
            self._grow()
        row = self.n
        self.vecs[row] = doc.embedding
        self.uids[row] = doc.uid
        self.live[row] = True
        self.conv[row] = conv_code
        self.speaker[row] = speaker_code
        self.role[row] = _ROLE_CODE[doc.role]
        self.started[row] = doc.started_at
        self.n += 1
        self.live_count += 1
        return row

    def kill(self, row: int) -> None:
        if self.live[row]:
            self.live[row] = False
            self.live_count -= 1

    def _grow(self) -> None:
        cap = max(self.vecs.shape[0] * 2, 16)
        for name in ("vecs", "uids", "live", "conv", "speaker", "role", "started"):
            old = getattr(self, name)
            new = np.zeros((cap, *old.shape[1:]), dtype=old.dtype)
            new[: self.n] = old[: self.n]
            setattr(self, name, new)

    def mask(self, f: Filters, convs: Codes, speakers: Codes) -> npt.NDArray[np.bool_]:
        """Rows (of the first ``n``) that are live and pass every filter but tenant/user."""
        n = self.n
        m = self.live[:n].copy()
        if f.conversation_ids:
            m &= np.isin(self.conv[:n], convs.lookup(f.conversation_ids))
        if f.speakers:
            m &= np.isin(self.speaker[:n], speakers.lookup(f.speakers))
        if f.roles:
            m &= np.isin(self.role[:n], np.array([_ROLE_CODE[r] for r in f.roles], np.int8))
        if f.since is not None:
            m &= self.started[:n] >= f.since
        if f.until is not None:
            m &= self.started[:n] <= f.until
        return m

    def exact(
        self,
        q: npt.NDArray[np.float32],
        mask: npt.NDArray[np.bool_] | None,
        k: int,
        start: int = 0,
        stop: int | None = None,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """The best ``k`` candidate rows in ``[start, stop)``: uids and scores, unsorted.

        Every row tied with the k-th score is kept, so a later merge can break ties by uid
        exactly as if all rows had been scored together.
        """
        stop = self.n if stop is None else min(stop, self.n)
        scores = self.vecs[start:stop] @ q
        keep = (self.live if mask is None else mask)[start:stop]
        uids, scores = self.uids[start:stop][keep], scores[keep]
        if scores.size > k:
            kth = scores[np.argpartition(-scores, k - 1)[k - 1]]
            top = scores >= kth
            uids, scores = uids[top], scores[top]
        return uids, scores
