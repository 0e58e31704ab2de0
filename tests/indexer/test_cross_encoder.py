"""`LocalCrossEncoder` on a real (tiny) cross-encoder built at test time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from indexer.cross_encoder import LocalCrossEncoder
from indexer.errors import EmbedderError
from tests.tiny_cross_encoder import build_tiny_cross_encoder, reference_scores

TEXTS = ["painting mostly and some pottery", "the weather was awful today", "my car broke down"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_cross_encoder(tmp_path_factory.mktemp("ce") / "tiny-ce")


def test_scores_follow_the_model(model_dir: Path) -> None:
    encoder = LocalCrossEncoder(model_dir)
    scores = encoder.score("what do you like for fun", TEXTS)
    logits = reference_scores(model_dir, "what do you like for fun", TEXTS)
    assert scores.shape == (3,) and scores.dtype == np.float32
    # sentence-transformers applies a sigmoid to a one-label model: same order, known values
    assert scores == pytest.approx(1 / (1 + np.exp(-logits)), abs=1e-5)
    assert len(set(np.round(scores, 4))) == 3  # the texts are told apart
    assert encoder.model_id == "cross-encoder:tiny-ce"
    assert encoder.score("anything", []).shape == (0,)


def test_a_directory_without_a_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EmbedderError, match="config.json"):
        LocalCrossEncoder(tmp_path / "missing")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(EmbedderError, match="cannot load"):
        LocalCrossEncoder(tmp_path / "broken")
