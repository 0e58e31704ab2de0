"""Audio benchmark: ``python -m audio_ingest.bench --out docs/audio``.

1. Real-time factor and WER of each bundled Whisper model on the espeak-ng set
   (``audio_ingest.speech_set``: 20 sentences, 4 voices, names, numbers, dates).
2. A live stream through ``StreamSession`` on the served parts (embedded PostgreSQL, the
   ONNX embedder, the index shard and its tailer): sentences with 1 s pauses, fed in 100 ms
   frames at real-time pace. Per utterance: end of speech -> ``final`` event (this includes
   the VAD's 500 ms of silence that ends an utterance), and ``final`` -> searchable (the
   index shard has caught up with the final's ``seq``).

Writes ``audio.json`` and ``audio.md`` in ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from audio_ingest.audio_io import SAMPLE_RATE, float_to_pcm16
from audio_ingest.protocols import Transcriber
from audio_ingest.segmenter import Segmenter
from audio_ingest.session import StreamLimits, StreamSession, StreamStart
from audio_ingest.speech_set import Spoken, spoken_set, word_error_rate
from audio_ingest.transcriber import WhisperTranscriber
from audio_ingest.vad import SileroVad
from indexer.models import Role

FRAME_S = 0.1


def _pct(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {
        "p50": round(float(np.percentile(a, 50)), 1),
        "p95": round(float(np.percentile(a, 95)), 1),
        "max": round(float(a.max()), 1),
        "n": int(a.size),
    }


def bench_models(spoken: list[Spoken], cache: Path, models: list[str]) -> list[dict[str, Any]]:
    rows = []
    audio_s = sum(s.audio.size for s in spoken) / SAMPLE_RATE
    for name in models:
        for beam in (1, 5):
            t = WhisperTranscriber(model=name, cache_dir=cache, beam_size=beam)
            t.transcribe(spoken[0].audio)  # warm-up
            t0 = time.perf_counter()
            hyps = [t.transcribe(s.audio).text for s in spoken]
            took = time.perf_counter() - t0
            rows.append(
                {
                    "model": name,
                    "beam_size": beam,
                    "rtf": round(took / audio_s, 3),
                    "wer": round(word_error_rate([s.text for s in spoken], hyps), 4),
                    "audio_s": round(audio_s, 1),
                }
            )
            sys.stderr.write(f"{rows[-1]}\n")
    return rows


def bench_stream(
    spoken: list[Spoken], work: Path, model_cache: Path, transcriber: Transcriber
) -> dict[str, Any]:
    from convmem.settings import EmbedderSettings, Settings
    from convmem.wiring import build_services

    settings = Settings(
        data_dir=work / "data",
        demo_data=False,
        embedder=EmbedderSettings(cache_dir=model_cache),
    )
    services = build_services(settings)
    pause = np.zeros(SAMPLE_RATE, np.float32)
    pieces, speech_ends, t = [], [], 0
    for s in spoken:
        pieces += [s.audio, pause]
        t += s.audio.size
        speech_ends.append(t)
        t += pause.size
    pcm = float_to_pcm16(np.concatenate(pieces))
    frame = int(FRAME_S * SAMPLE_RATE) * 2
    to_final: list[float] = []
    to_search: list[float] = []

    async def run() -> None:
        fed_at: dict[int, float] = {}  # sample offset at the end of each frame -> wall time

        async def send(event: dict[str, Any]) -> None:
            if event["type"] != "final":
                return
            now = time.perf_counter()
            end = int(event["end"] * SAMPLE_RATE)
            # the speech end nearest this utterance, and when that sample was fed
            speech_end = min(speech_ends, key=lambda e: abs(e - end))
            fed = min((o for o in fed_at if o >= speech_end), default=None)
            if fed is not None:
                to_final.append((now - fed_at[fed]) * 1000)
            t0 = time.perf_counter()
            if await asyncio.to_thread(services.tailer.wait_for, int(event["seq"]), 5.0):
                to_search.append((time.perf_counter() - t0) * 1000 + (t0 - now) * 1000)

        session = StreamSession(
            start=StreamStart(
                tenant="bench", conversation_id="bench-call", speaker="Ann", role=Role.USER
            ),
            segmenter=Segmenter(SileroVad().probabilities),
            transcriber=transcriber,
            ingestor=services.ingestor,
            send=send,
            limits=StreamLimits(partial_interval_s=1.0),
        )
        session.start()
        start = time.perf_counter()
        for i in range(0, len(pcm), frame):
            chunk = pcm[i : i + frame]
            await session.feed(chunk)
            fed_at[(i + len(chunk)) // 2] = time.perf_counter()
            delay = start + (i + len(chunk)) / 2 / SAMPLE_RATE - time.perf_counter()
            await asyncio.sleep(max(0.0, delay))
        await session.finish()

    try:
        asyncio.run(run())
    finally:
        services.close()
    return {
        "utterances": len(spoken),
        "speech_end_to_final_ms": _pct(to_final),
        "final_to_searchable_ms": _pct(to_search),
        "model": transcriber.name,
    }


def render(report: dict[str, Any]) -> str:
    lines = [
        "# Audio benchmark report",
        "",
        f"Machine: {report['machine']}; {report['date']}",
        "",
        "| model | beam | real-time factor | WER (espeak-ng set) |",
        "|---|---|---|---|",
    ]
    for r in report["models"]:
        lines.append(f"| {r['model']} | {r['beam_size']} | {r['rtf']} | {100 * r['wer']:.1f} % |")
    s = report["stream"]
    e2f, f2s = s["speech_end_to_final_ms"], s["final_to_searchable_ms"]
    lines += [
        "",
        f"Live stream ({s['model']}, {s['utterances']} utterances, real-time 100 ms frames):",
        "",
        f"- end of speech -> final event: p50 {e2f['p50']} ms, p95 {e2f['p95']} ms"
        f" (max {e2f['max']}, n={e2f['n']})",
        f"- final event -> searchable: p50 {f2s['p50']} ms, p95 {f2s['p95']} ms"
        f" (max {f2s['max']}, n={f2s['n']})",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--models", default="tiny.en,base")
    parser.add_argument("--stream-utterances", type=int, default=10)
    parser.add_argument("--model-cache", type=Path, default=Path("data/models"))
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="convmem-audio-bench-"))
    spoken = spoken_set(work)
    report: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {platform.platform()}",
        "models": bench_models(spoken, args.model_cache, args.models.split(",")),
    }
    tiny = WhisperTranscriber(model="tiny.en", cache_dir=args.model_cache)
    report["stream"] = bench_stream(spoken[: args.stream_utterances], work, args.model_cache, tiny)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "audio.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (args.out / "audio.md").write_text(render(report), encoding="utf-8")
    sys.stdout.write(render(report) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
