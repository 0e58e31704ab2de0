"""File ingest: a recording (WAV, FLAC, OGG) to utterances, one speaker per channel.

The same VAD segmentation and transcriber as the live stream, run over the whole file.
Utterance ids are derived from the conversation, the file name, the channel and the
utterance's start sample, so ingesting the same file twice is idempotent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from audio_ingest.audio_io import SAMPLE_RATE, AudioFileError, read_audio, resample
from audio_ingest.protocols import Transcriber
from audio_ingest.segmenter import Segmenter
from audio_ingest.vad import SileroVad
from indexer.models import Role, Source, UtteranceIn

_CHUNK = SAMPLE_RATE  # one second at a time through the segmenter, as a stream would


@dataclass(frozen=True, slots=True)
class FileSummary:
    audio_s: float
    channels: int
    utterances: int
    skipped: int  # speech segments Whisper heard no words in


def transcribe_file(
    path: Path,
    *,
    transcriber: Transcriber,
    conversation_id: str,
    speakers: Sequence[str],
    user_id: str | None = None,
    role: Role = Role.USER,
    started_at: datetime | None = None,
    progress: Callable[[float], None] | None = None,
) -> tuple[list[UtteranceIn], FileSummary]:
    """Utterances of every channel, in time order; ``speakers[i]`` spoke on channel ``i``.

    ``progress`` is called with the seconds of audio processed since the last call.
    """
    data, rate = read_audio(path)
    channels = data.shape[1]
    if channels > 2:
        raise AudioFileError(f"{path}: {channels} channels; mono or stereo (one per speaker)")
    if len(speakers) < channels:
        raise AudioFileError(f"{path}: {channels} channels need {channels} speaker names")
    t0 = started_at or datetime.fromtimestamp(path.stat().st_mtime, UTC)
    vad = SileroVad()
    out: list[UtteranceIn] = []
    skipped = 0
    for ch in range(channels):
        samples = resample(data[:, ch], rate, SAMPLE_RATE)
        segmenter = Segmenter(vad.probabilities)
        segments = []
        for i in range(0, samples.size, _CHUNK):
            segments += segmenter.feed(samples[i : i + _CHUNK])
            if progress is not None:
                progress(min(_CHUNK, samples.size - i) / SAMPLE_RATE / channels)
        segments += segmenter.flush()
        for seg in segments:
            t = transcriber.transcribe(seg.audio)
            if not t.text.strip():
                skipped += 1
                continue
            out.append(
                UtteranceIn(
                    id=f"{conversation_id}:{path.stem}:ch{ch}:{seg.start}",
                    conversation_id=conversation_id,
                    speaker=speakers[ch],
                    role=role,
                    text=t.text.strip(),
                    started_at=t0 + timedelta(seconds=seg.start_s),
                    ended_at=t0 + timedelta(seconds=seg.end_s),
                    user_id=user_id,
                    source=Source.ASR,
                    asr_confidence=t.confidence,
                    metadata={"file": path.name, "channel": str(ch)},
                )
            )
    out.sort(key=lambda u: (u.started_at, u.id))
    summary = FileSummary(
        audio_s=round(data.shape[0] / rate, 3),
        channels=channels,
        utterances=len(out),
        skipped=skipped,
    )
    return out, summary
