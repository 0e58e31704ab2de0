"""`WhisperTranscriber`: the ``Transcriber`` (``audio_ingest.protocols``) on faster-whisper.

`WhisperTranscriber` runs faster-whisper (CTranslate2) on weights resolved offline by
``asr_models``. Confidence is the duration-weighted mean of exp(avg_logprob) over Whisper's
segments: the geometric-mean token probability, in (0, 1].
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np
import numpy.typing as npt

from audio_ingest.asr_models import resolve_whisper
from audio_ingest.protocols import Transcript


class WhisperTranscriber:
    """faster-whisper. Thread-safe: calls are serialised (one model, 2 cores)."""

    def __init__(
        self,
        *,
        model: str = "tiny.en",
        cache_dir: Path,
        device: str = "cpu",
        compute_type: str = "int8",
        beam_size: int = 1,
        threads: int = 0,
        language: str = "en",
    ) -> None:
        if beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {beam_size}")
        from faster_whisper import WhisperModel

        path = resolve_whisper(model, cache_dir)
        self._name = model
        self._model = WhisperModel(
            str(path), device=device, compute_type=compute_type, cpu_threads=threads
        )
        self._beam_size = beam_size
        self._language = None if model.endswith(".en") else language
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self._name

    def transcribe(self, audio: npt.NDArray[np.float32]) -> Transcript:
        if audio.ndim != 1:
            raise ValueError("audio must be mono (1-d)")
        if audio.size == 0:
            return Transcript("", 0.0)
        with self._lock:
            segments, _info = self._model.transcribe(
                np.ascontiguousarray(audio, dtype=np.float32),
                language=self._language,
                beam_size=self._beam_size,
                vad_filter=False,
                condition_on_previous_text=False,
                without_timestamps=True,
            )
            parts = list(segments)
        text = " ".join(s.text.strip() for s in parts if s.text.strip())
        weights = [max(s.end - s.start, 1e-3) for s in parts]
        if not parts:
            return Transcript("", 0.0)
        mean_logprob = sum(w * s.avg_logprob for w, s in zip(weights, parts, strict=True))
        confidence = math.exp(mean_logprob / sum(weights))
        return Transcript(text=text, confidence=round(min(1.0, confidence), 4))
