"""`Hits`: the value every retriever returns and every fusion consumes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class Hits:
    """Ranked results: parallel arrays of document ids and scores, best first.

    Ids are the store's internal int64 document ids (``utterances.uid``). Scores are
    float32 and comparable only within one ``Hits`` value. ``exhaustive`` is False when the
    retriever ran out of time and looked at only part of its scope (the hits are then the
    best of what it saw).
    """

    ids: npt.NDArray[np.int64]
    scores: npt.NDArray[np.float32]
    exhaustive: bool = True

    def __post_init__(self) -> None:
        if self.ids.shape != self.scores.shape or self.ids.ndim != 1:
            raise ValueError(
                f"ids and scores must be 1-d arrays of one length, got {self.ids.shape} "
                f"and {self.scores.shape}"
            )

    @classmethod
    def empty(cls) -> Hits:
        return cls(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32))

    @classmethod
    def from_lists(cls, ids: list[int], scores: list[float]) -> Hits:
        return cls(np.asarray(ids, dtype=np.int64), np.asarray(scores, dtype=np.float32))

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def top(self, k: int) -> Hits:
        """The first ``k`` hits (they are already sorted)."""
        return Hits(self.ids[:k], self.scores[:k], self.exhaustive)
