"""A seeded synthetic conversation corpus for latency benchmarks (no relevance meaning)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

_ONSETS = ["b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w"]
_NUCLEI = ["a", "e", "i", "o", "u", "ai", "ou", "ea"]
_CODAS = ["", "n", "r", "s", "t", "m", "l", "nd", "st"]
_COMMON = (
    "the a to and i you it is that of in we my for on have was this with what be so can "
    "do just like know about going yeah think really when get there your me are not"
).split()


@dataclass(frozen=True, slots=True)
class SyntheticUtterance:
    id: str
    conversation_id: str
    user_id: str
    speaker: str
    role: str
    text: str
    started_at: datetime

    def api_body(self) -> dict[str, str]:
        """The utterance as ``POST /v1/utterances`` takes it."""
        return {
            "id": self.id,
            "conversation_id": self.conversation_id,
            "user_id": self.user_id,
            "speaker": self.speaker,
            "role": self.role,
            "text": self.text,
            "started_at": self.started_at.isoformat(),
        }


class SyntheticCorpus:
    """Words are Zipf-distributed over a made-up vocabulary plus common English words."""

    def __init__(self, *, seed: int = 0, vocab_size: int = 5000) -> None:
        self._rng = np.random.default_rng(seed)
        words: set[str] = set()
        while len(words) < vocab_size:
            parts = self._rng.integers(1, 4)
            words.add(
                "".join(
                    str(self._rng.choice(_ONSETS))
                    + str(self._rng.choice(_NUCLEI))
                    + str(self._rng.choice(_CODAS))
                    for _ in range(parts)
                )
            )
        self.vocab = _COMMON + sorted(words)
        ranks = np.arange(1, len(self.vocab) + 1, dtype=np.float64)
        self._p = (1 / ranks) / (1 / ranks).sum()

    def sentence(self, lo: int = 8, hi: int = 20) -> str:
        n = int(self._rng.integers(lo, hi + 1))
        return " ".join(self.vocab[i] for i in self._rng.choice(len(self.vocab), n, p=self._p))

    def utterances(
        self, n: int, *, users: int, turns_per_conversation: int = 40
    ) -> list[SyntheticUtterance]:
        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        out: list[SyntheticUtterance] = []
        for i in range(n):
            conv_no = i // turns_per_conversation
            user = f"user-{conv_no % users}"
            turn = i % turns_per_conversation
            out.append(
                SyntheticUtterance(
                    id=f"syn-{i}",
                    conversation_id=f"syn-conv-{conv_no}",
                    user_id=user,
                    speaker="Agent" if turn % 2 else user,
                    role="agent" if turn % 2 else "user",
                    text=self.sentence(),
                    started_at=t0 + timedelta(hours=conv_no, seconds=15 * turn),
                )
            )
        return out

    def queries(self, n: int) -> list[str]:
        return [self.sentence(3, 6) for _ in range(n)]
