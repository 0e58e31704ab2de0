"""`Segmenter`: cut a live 16 kHz stream into utterances from per-window speech probabilities.

Hysteresis on the VAD's probability (start at ``threshold``, count silence below
``neg_threshold``): an utterance starts at the first speech window (with ``pad_ms`` of audio
before it) and ends after ``min_silence_ms`` of silence (keeping ``pad_ms`` after the last
speech). Utterances shorter than ``min_speech_ms`` of speech are dropped as noise; one longer
than ``max_utterance_s`` is cut there and continues as the next. Memory is bounded by the
longest utterance. Sample offsets count from the start of the stream.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from audio_ingest.audio_io import SAMPLE_RATE
from audio_ingest.vad import WINDOW

Scorer = Callable[[npt.NDArray[np.float32], npt.NDArray[np.float32]], npt.NDArray[np.float32]]


@dataclass(frozen=True, slots=True)
class Segment:
    start: int  # first sample, from the start of the stream
    end: int  # one past the last sample
    audio: npt.NDArray[np.float32]

    @property
    def start_s(self) -> float:
        return self.start / SAMPLE_RATE

    @property
    def end_s(self) -> float:
        return self.end / SAMPLE_RATE


class Segmenter:
    def __init__(
        self,
        score: Scorer,
        *,
        threshold: float = 0.5,
        neg_threshold: float = 0.35,
        min_silence_ms: int = 500,
        pad_ms: int = 200,
        min_speech_ms: int = 250,
        max_utterance_s: float = 30.0,
    ) -> None:
        if not 0 < neg_threshold <= threshold < 1:
            raise ValueError("need 0 < neg_threshold <= threshold < 1")
        self._score = score
        self._threshold = threshold
        self._neg_threshold = neg_threshold
        self._min_silence = max(1, round(min_silence_ms * SAMPLE_RATE / 1000 / WINDOW))
        self._pad = round(pad_ms * SAMPLE_RATE / 1000)
        self._min_speech = max(1, round(min_speech_ms * SAMPLE_RATE / 1000 / WINDOW))
        self._max_len = int(max_utterance_s * SAMPLE_RATE)
        self._pending = np.zeros(0, dtype=np.float32)
        self._context = np.zeros(64, dtype=np.float32)
        self._pos = 0  # samples scored so far
        self._preroll = np.zeros(0, dtype=np.float32)
        self._utt: list[npt.NDArray[np.float32]] = []
        self._utt_len = 0
        self._utt_start = 0
        self._speech_windows = 0
        self._silence = 0

    @property
    def in_speech(self) -> bool:
        return bool(self._utt)

    @property
    def position(self) -> int:
        """Samples received so far."""
        return self._pos + self._pending.size

    @property
    def current_samples(self) -> int:
        """Length of the utterance in progress (0 when none), without copying it."""
        return self._utt_len if self._utt else 0

    def current(self) -> Segment | None:
        """The utterance in progress (for partial transcripts), or None."""
        if not self._utt:
            return None
        audio = np.concatenate(self._utt)
        return Segment(self._utt_start, self._utt_start + audio.size, audio)

    def feed(self, samples: npt.NDArray[np.float32]) -> list[Segment]:
        """Add samples; return the utterances that ended within them."""
        buf = np.concatenate([self._pending, samples.astype(np.float32, copy=False)])
        n = buf.size // WINDOW
        self._pending = buf[n * WINDOW :]
        if n == 0:
            return []
        windows = buf[: n * WINDOW].reshape(n, WINDOW)
        probs = self._score(windows, self._context)
        self._context = windows[-1, -64:].copy()
        out: list[Segment] = []
        for window, p in zip(windows, probs, strict=True):
            seg = self._step(window, float(p))
            if seg is not None:
                out.append(seg)
        return out

    def flush(self) -> list[Segment]:
        """End of stream: finish the utterance in progress (with any unscored tail)."""
        if self._utt and self._pending.size:
            self._utt.append(self._pending)
            self._utt_len += self._pending.size
        self._pos += self._pending.size
        self._pending = np.zeros(0, dtype=np.float32)
        seg = self._close(trailing_silence=0)
        return [seg] if seg is not None else []

    def _step(self, window: npt.NDArray[np.float32], p: float) -> Segment | None:
        start = self._pos
        self._pos += WINDOW
        if not self._utt:
            if p >= self._threshold:
                self._utt_start = start - self._preroll.size
                self._utt = [self._preroll, window]
                self._utt_len = self._preroll.size + WINDOW
                self._speech_windows, self._silence = 1, 0
                self._preroll = np.zeros(0, dtype=np.float32)
            else:
                self._preroll = np.concatenate([self._preroll, window])[-self._pad :]
            return None
        self._utt.append(window)
        self._utt_len += WINDOW
        if p < self._neg_threshold:
            self._silence += 1
        else:
            self._silence = 0
            self._speech_windows += 1
        if self._silence >= self._min_silence:
            return self._close(trailing_silence=self._silence * WINDOW)
        if self._utt_len >= self._max_len:
            seg = self._close(trailing_silence=0, keep_going=True)
            return seg
        return None

    def _close(self, *, trailing_silence: int, keep_going: bool = False) -> Segment | None:
        if not self._utt:
            return None
        audio = np.concatenate(self._utt)
        cut = max(0, trailing_silence - self._pad)
        tail = audio[audio.size - cut :] if cut else np.zeros(0, dtype=np.float32)
        audio = audio[: audio.size - cut]
        start = self._utt_start
        enough = self._speech_windows >= self._min_speech
        self._utt, self._utt_len, self._silence = [], 0, 0
        self._preroll = tail[-self._pad :] if self._pad else np.zeros(0, dtype=np.float32)
        if keep_going:  # a forced cut inside speech: the next utterance starts right here
            self._utt_start = start + audio.size
            self._utt = [np.zeros(0, dtype=np.float32)]
            self._speech_windows = 0
            self._preroll = np.zeros(0, dtype=np.float32)
        else:
            self._speech_windows = 0
        if not enough:
            return None
        return Segment(start, start + audio.size, audio)
