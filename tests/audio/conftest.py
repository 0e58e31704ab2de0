"""Audio fixtures: speech spoken by espeak-ng at test time, and a real server on a real port."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from audio_ingest.audio_io import SAMPLE_RATE, read_audio, resample
from audio_ingest.protocols import Transcriber
from audio_ingest.speech_set import espeak_available
from audio_ingest.speech_set import speak as speak_to
from audio_ingest.transcriber import WhisperTranscriber
from convmem.wiring import audio_router_for
from indexer.embedders import load_embedder
from indexer.protocols import Embedder
from tests.conftest import app_settings
from tests.query_service.conftest import app_for
from tests.query_service.live_server import serve


def speak(text: str, path: Path, **kw: Any) -> Path:
    if not espeak_available():
        pytest.fail("espeak-ng is missing: `make test` installs it (apt-get install espeak-ng)")
    return speak_to(text, path, **kw)


def speech_16k(text: str, tmp: Path, **kw: Any) -> npt.NDArray[np.float32]:
    data, rate = read_audio(speak(text, tmp / f"{abs(hash(text))}.wav", **kw))
    return resample(data[:, 0], rate, SAMPLE_RATE)


@pytest.fixture(scope="session")
def embedder(model_cache: Path) -> Embedder:
    return load_embedder("static", model_path=None, cache_dir=model_cache)


@pytest.fixture(scope="session")
def tiny_en(model_cache: Path) -> Transcriber:
    return WhisperTranscriber(model="tiny.en", cache_dir=model_cache)


@pytest.fixture
def live_server(
    database_url: str, tmp_path: Path, tiny_en: Transcriber, embedder: Embedder
) -> Callable[..., AbstractContextManager[str]]:
    """``with live_server(keys=..., **settings) as base_url:``: uvicorn on a free port."""

    @contextmanager
    def make(*, keys: dict[str, str] | None = None, **settings: object) -> Iterator[str]:
        cfg = app_settings(database_url, tmp_path, keys, **settings)
        router = audio_router_for(cfg, load_transcriber=lambda: tiny_en)
        with serve(app_for(cfg, embedder, routers=[router])) as base:
            yield base

    return make
