"""The cross-encoder reranker is off by default and loaded from ``CONVMEM_CROSS_ENCODER__PATH``."""

from __future__ import annotations

from pathlib import Path

import pytest

from convmem.settings import Settings
from convmem.wiring import build_cross_encoder, search_params
from indexer.cross_encoder import LocalCrossEncoder
from indexer.errors import EmbedderError
from tests.tiny_cross_encoder import build_tiny_cross_encoder


def test_off_by_default() -> None:
    assert build_cross_encoder(Settings()) is None


def test_loaded_from_the_configured_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_dir = build_tiny_cross_encoder(tmp_path / "reranker")
    monkeypatch.setenv("CONVMEM_CROSS_ENCODER__PATH", str(model_dir))
    monkeypatch.setenv("CONVMEM_RANKING__CROSS_ENCODER_TOP", "30")
    settings = Settings()
    encoder = build_cross_encoder(settings)
    assert isinstance(encoder, LocalCrossEncoder)
    assert encoder.score("what do you like", ["painting", "the weather"]).shape == (2,)
    assert search_params(settings).cross_encoder_top == 30


def test_a_bad_directory_fails_at_start_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVMEM_CROSS_ENCODER__PATH", str(tmp_path / "nothing-here"))
    with pytest.raises(EmbedderError, match="no config.json"):
        build_cross_encoder(Settings())
