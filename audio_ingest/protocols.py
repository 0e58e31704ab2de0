"""The boundary of ``audio_ingest``: what a speech recogniser must do."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class Transcript:
    text: str
    confidence: float  # in [0, 1]


class Transcriber(Protocol):
    @property
    def name(self) -> str: ...

    def transcribe(self, audio: npt.NDArray[np.float32]) -> Transcript:
        """Transcribe one utterance of 16 kHz mono float32 samples in [-1, 1]."""
        ...
