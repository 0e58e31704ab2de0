"""StreamSession on real parts: a slow transcriber makes it lag (said, nothing dropped), and a
failed utterance is reported while the stream goes on."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from audio_ingest.audio_io import float_to_pcm16
from audio_ingest.protocols import Transcriber, Transcript
from audio_ingest.segmenter import Segmenter
from audio_ingest.session import StreamLimits, StreamSession, StreamStart
from audio_ingest.vad import SileroVad
from indexer.ingest import Ingestor
from indexer.models import Role
from indexer.pg_store import PgStore
from indexer.protocols import Embedder
from tests.audio.conftest import speech_16k

pytestmark = pytest.mark.integration
LINES = ("We have a puppy called Biscuit.", "My sister lives in Lisbon.", "I run every morning.")


class Slowed:
    """The real transcriber, made slow (a busy machine), or failing on chosen calls."""

    def __init__(
        self, inner: Transcriber, delay_s: float, fail_calls: frozenset[int] = frozenset()
    ):
        self.inner, self.delay_s, self.fail_calls, self.calls = inner, delay_s, fail_calls, 0

    @property
    def name(self) -> str:
        return self.inner.name

    def transcribe(self, audio: npt.NDArray[np.float32]) -> Transcript:
        self.calls += 1
        if self.calls in self.fail_calls:
            raise RuntimeError("decoder crashed")
        time.sleep(self.delay_s)
        return self.inner.transcribe(audio)


def run_session(
    transcriber: Transcriber, ingestor: Ingestor, pcm: bytes, limits: StreamLimits
) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []

    async def send(event: dict[str, Any]) -> None:
        events.append(event)

    async def main() -> None:
        session = StreamSession(
            start=StreamStart(tenant="t", conversation_id="c", speaker="Ann", role=Role.USER),
            segmenter=Segmenter(SileroVad().probabilities),
            transcriber=transcriber,
            ingestor=ingestor,
            send=send,
            limits=limits,
        )
        session.start()
        for i in range(0, len(pcm), 3200):  # as fast as the client can send
            await session.feed(pcm[i : i + 3200])
        await session.finish()

    asyncio.run(main())
    return events


def three_utterances(tmp_path: Path) -> bytes:
    gap = np.zeros(16_000, np.float32)
    parts = [x for line in LINES for x in (speech_16k(line, tmp_path), gap)]
    return float_to_pcm16(np.concatenate(parts))


@pytest.fixture
def ingestor(database_url: str, embedder: Embedder):
    store = PgStore.connect(database_url)
    yield Ingestor(store=store, embedder=embedder), store
    store.close()


def test_lagging_is_said_and_nothing_is_dropped(tiny_en, ingestor, tmp_path: Path) -> None:
    ing, store = ingestor
    limits = StreamLimits(max_lag_s=1.0, max_queued=1, partial_interval_s=100)
    events = run_session(Slowed(tiny_en, 1.0), ing, three_utterances(tmp_path), limits)
    kinds = [e["type"] for e in events]
    assert "lagging" in kinds and kinds.count("final") == 3
    lag = next(e for e in events if e["type"] == "lagging")
    assert lag["behind_s"] > 1.0 and lag["max_lag_s"] == 1.0
    stored = [u.text.lower() for u in store.transcript("t", "c")]
    assert len(stored) == 3 and "puppy" in stored[0] and "lisbon" in stored[1]


def test_a_failed_utterance_is_reported_and_the_stream_goes_on(
    tiny_en, ingestor, tmp_path: Path
) -> None:
    ing, store = ingestor
    limits = StreamLimits(partial_interval_s=100)
    events = run_session(
        Slowed(tiny_en, 0.0, frozenset({1})), ing, three_utterances(tmp_path), limits
    )
    errors = [e for e in events if e["type"] == "error"]
    assert len(errors) == 1 and errors[0]["code"] == "utterance_failed"
    assert "decoder crashed" in errors[0]["message"]
    assert [e["type"] for e in events].count("final") == 2
    assert len(store.transcript("t", "c")) == 2
