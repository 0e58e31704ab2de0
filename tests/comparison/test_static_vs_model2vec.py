"""Our static encoder against the reference implementation, model2vec (test-only)."""

from __future__ import annotations

import model2vec
import numpy as np
import pytest

from indexer.static_embedder import StaticEmbedder
from indexer.static_models import POTION_BASE_8M, default_model_home, ensure_model

pytestmark = pytest.mark.slow

SAMPLES = [
    "I adopted a greyhound named Biscuit.",
    "What did Caroline research after the support group?",
    "Melanie painted a sunrise over the lake last summer!",
    "Can you book a table for two at the Italian restaurant tonight?",
    "Ça va? Très bien, merci. 日本語も少し話せます。",
    "ok",
    "word " * 2000,  # past max_length: both truncate the same way
]


def test_matches_model2vec_to_cosine_0999() -> None:
    path = ensure_model(POTION_BASE_8M, default_model_home())
    ours = StaticEmbedder(model_dir=path).embed_batch(SAMPLES)
    theirs = np.asarray(model2vec.StaticModel.from_pretrained(str(path)).encode(SAMPLES))
    cosines = (ours * theirs).sum(axis=1) / (
        np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1)
    )
    assert cosines.min() >= 0.999, cosines
