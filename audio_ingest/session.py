"""`StreamSession`: one live audio stream, from PCM frames to stored, searchable utterances.

Transport-agnostic (``ws.py`` binds it to a WebSocket): frames go in through ``feed``, events
go out through the ``send`` callback. Speech is cut into utterances by the ``Segmenter``;
each finished utterance is queued for the transcription worker, transcribed, stored through
the same ``Ingestor`` as text ingest, and announced as a ``final`` event with the ``seq`` at
which it became durable. While an utterance is still being spoken, the worker transcribes
what has arrived every ``partial_interval_s`` (only when it is otherwise idle) and sends a
``partial`` event.

Back-pressure, in two steps. When transcription falls more than ``max_lag_s`` behind the
audio received, a ``lagging`` event says so (once per episode) and audio is still accepted:
finished utterances wait in a queue. That queue is bounded (``max_queued`` utterances of at
most ``max_utterance_s`` each); when it is full, ``feed`` waits, so the transport stops
reading and the client's sends slow down. Speech is never dropped and memory never grows
without bound. An utterance that fails to transcribe or store is reported in an ``error``
event (``utterance_failed``) and the stream goes on.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from audio_ingest.audio_io import SAMPLE_RATE, pcm16_to_float
from audio_ingest.protocols import Transcriber
from audio_ingest.segmenter import Segment, Segmenter
from indexer.ingest import Ingestor
from indexer.models import Role, Source, UtteranceIn

_log = logging.getLogger(__name__)
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class StreamLimits:
    max_frame_bytes: int = 64_000  # 2 s of 16 kHz PCM16
    max_session_s: float = 4 * 3600.0
    max_lag_s: float = 10.0
    max_queued: int = 8  # finished utterances waiting for the transcriber
    partial_interval_s: float = 1.0


@dataclass(frozen=True, slots=True)
class StreamStart:
    tenant: str
    conversation_id: str
    speaker: str
    role: Role
    user_id: str | None = None
    agent_id: str | None = None
    started_at: datetime | None = None


class StreamError(Exception):
    """Bad input from the client: sent as an ``error`` event, then the stream is closed."""

    def __init__(self, code: str, message: str, close_code: int) -> None:
        super().__init__(message)
        self.code = code
        self.close_code = close_code


class StreamSession:
    def __init__(
        self,
        *,
        start: StreamStart,
        segmenter: Segmenter,
        transcriber: Transcriber,
        ingestor: Ingestor,
        send: Send,
        limits: StreamLimits,
    ) -> None:
        self._start = start
        self._segmenter = segmenter
        self._transcriber = transcriber
        self._ingestor = ingestor
        self._send = send
        self._limits = limits
        self.session_id = uuid.uuid4().hex[:12]
        self._t0 = start.started_at or datetime.now(UTC)
        self._queue: asyncio.Queue[tuple[str, Segment] | None] = asyncio.Queue(
            maxsize=limits.max_queued
        )
        self._done_samples = 0  # audio transcribed (end of the last final)
        self._last_partial = 0
        self._lagging = False
        self._count = 0
        self._client_gone = False
        self.finals: list[dict[str, Any]] = []
        self._worker: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the transcription worker (on the running event loop)."""
        if self._worker is None:
            self._worker = asyncio.create_task(self._work(), name=f"audio-{self.session_id}")

    @property
    def received_s(self) -> float:
        return self._segmenter.position / SAMPLE_RATE

    async def feed(self, frame: bytes) -> None:
        """One binary frame of PCM16LE mono."""
        if len(frame) > self._limits.max_frame_bytes:
            raise StreamError(
                "frame_too_large",
                f"a frame holds at most {self._limits.max_frame_bytes} bytes, got {len(frame)}",
                1009,
            )
        if len(frame) % 2:
            raise StreamError(
                "odd_byte_count",
                f"pcm_s16le frames hold whole 2-byte samples; got {len(frame)} bytes",
                1003,
            )
        if self.received_s + len(frame) / 2 / SAMPLE_RATE > self._limits.max_session_s:
            raise StreamError(
                "session_too_long",
                f"a stream may carry at most {self._limits.max_session_s:g} s of audio",
                1008,
            )
        # the VAD runs off the event loop; one frame at a time, so the segmenter is never shared
        segments = await asyncio.to_thread(self._segmenter.feed, pcm16_to_float(frame))
        for segment in segments:
            await self._queue.put(("final", segment))  # waits when full: back-pressure
        await self._maybe_partial()
        await self._check_lag()

    async def finish(self) -> None:
        """End of stream (or disconnect): finalise the speech received, drain the queue."""
        for segment in self._segmenter.flush():
            await self._queue.put(("final", segment))
        await self._queue.put(None)
        if self._worker is not None:
            await self._worker

    async def abort(self) -> None:
        if self._worker is not None:
            self._worker.cancel()

    async def _maybe_partial(self) -> None:
        spoken = self._segmenter.current_samples
        if spoken == 0:
            self._last_partial = 0
            return
        interval = int(self._limits.partial_interval_s * SAMPLE_RATE)
        if spoken - self._last_partial >= interval and self._queue.empty():
            current = self._segmenter.current()  # the copy, only when a partial is due
            if current is not None:
                self._last_partial = spoken
                self._queue.put_nowait(("partial", current))

    async def _check_lag(self) -> None:
        pending = self._segmenter.position - self._done_samples
        behind = (pending - self._segmenter.current_samples) / SAMPLE_RATE
        if behind > self._limits.max_lag_s and not self._lagging:
            self._lagging = True
            await self._emit(
                {
                    "type": "lagging",
                    "behind_s": round(behind, 2),
                    "max_lag_s": self._limits.max_lag_s,
                    "message": "transcription is behind real time; audio is buffered, not dropped",
                }
            )
        elif behind <= self._limits.max_lag_s / 2:
            self._lagging = False

    async def _work(self) -> None:
        while (job := await self._queue.get()) is not None:
            try:
                await self._process(*job)
            except Exception as exc:  # noqa: BLE001 - one utterance fails, the stream goes on
                kind, segment = job
                _log.exception("session %s: %s utterance failed", self.session_id, kind)
                if kind == "final":
                    self._done_samples = segment.end
                    await self._emit(
                        {
                            "type": "error",
                            "code": "utterance_failed",
                            "message": f"the utterance at {segment.start_s:.2f}-"
                            f"{segment.end_s:.2f} s could not be stored: {exc}",
                            "start": round(segment.start_s, 3),
                            "end": round(segment.end_s, 3),
                        }
                    )

    async def _process(self, kind: str, segment: Segment) -> None:
        text, confidence = await self._transcribe(segment)
        if kind == "partial":
            if text:
                await self._emit(
                    {
                        "type": "partial",
                        "text": text,
                        "start": round(segment.start_s, 3),
                        "end": round(segment.end_s, 3),
                    }
                )
            return
        self._done_samples = segment.end
        if text:
            await self._store(segment, text, confidence)

    async def _transcribe(self, segment: Segment) -> tuple[str, float]:
        t = await asyncio.to_thread(self._transcriber.transcribe, segment.audio)
        return t.text.strip(), t.confidence

    async def _store(self, segment: Segment, text: str, confidence: float) -> None:
        s = self._start
        self._count += 1
        utterance = UtteranceIn(
            id=f"audio-{self.session_id}-{self._count}",
            conversation_id=s.conversation_id,
            speaker=s.speaker,
            role=s.role,
            text=text,
            started_at=self._t0 + timedelta(seconds=segment.start_s),
            ended_at=self._t0 + timedelta(seconds=segment.end_s),
            user_id=s.user_id,
            agent_id=s.agent_id,
            source=Source.ASR,
            asr_confidence=confidence,
            metadata={"audio_session": self.session_id},
        )
        result = await asyncio.to_thread(self._ingestor.ingest, s.tenant, [utterance])
        event = {
            "type": "final",
            "utterance_id": utterance.id,
            "text": text,
            "start": round(segment.start_s, 3),
            "end": round(segment.end_s, 3),
            "confidence": confidence,
            "seq": result.seq,
        }
        self.finals.append(event)
        await self._emit(event)

    async def _emit(self, event: dict[str, Any]) -> None:
        """Send an event; a client that has gone only loses the event, never the speech."""
        if self._client_gone:
            return
        try:
            await self._send(event)
        except Exception:  # noqa: BLE001 - any transport failure means the client left
            self._client_gone = True
            _log.info("session %s: client gone; still storing its speech", self.session_id)


def silence(seconds: float) -> bytes:
    """PCM16 silence (for clients and tests)."""
    return np.zeros(int(seconds * SAMPLE_RATE), dtype="<i2").tobytes()
