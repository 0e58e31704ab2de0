"""`LocalCrossEncoder`: the `CrossEncoder` adapter, a sentence-transformers cross-encoder
loaded from a local directory (never a model hub).

No cross-encoder weights ship offline on PyPI, so this is the production path for a model
the operator provides (for example a MiniLM or bge reranker copied into the cluster) and it is
off unless ``CONVMEM_CROSS_ENCODER__PATH`` names a directory. The tests build a tiny BERT
cross-encoder at test time and load it through this class.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from indexer.errors import EmbedderError


class LocalCrossEncoder:
    """A cross-encoder in ``model_dir`` (a Hugging Face sequence-classification model with one
    label, and its tokenizer), run on ``device``; pairs are truncated to ``max_length`` tokens.
    """

    def __init__(
        self,
        model_dir: Path,
        *,
        device: str = "cpu",
        max_length: int = 256,
        batch_size: int = 32,
    ) -> None:
        if not (model_dir / "config.json").is_file():
            raise EmbedderError(
                f"cross-encoder directory {model_dir} has no config.json: expected a "
                "sequence-classification model saved with save_pretrained (and its tokenizer)"
            )
        from sentence_transformers import CrossEncoder as _STCrossEncoder  # heavy: load lazily

        try:
            self._model = _STCrossEncoder(
                str(model_dir), device=device, max_length=max_length, local_files_only=True
            )
        except (OSError, ValueError) as exc:
            raise EmbedderError(f"cannot load the cross-encoder in {model_dir}: {exc}") from exc
        self._model_id = f"cross-encoder:{model_dir.name}"
        self._batch_size = batch_size

    @property
    def model_id(self) -> str:
        return self._model_id

    def score(self, query: str, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        if not texts:
            return np.empty(0, dtype=np.float32)
        scores = self._model.predict(
            [(query, t) for t in texts],
            batch_size=self._batch_size,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(scores, dtype=np.float32).reshape(len(texts))
