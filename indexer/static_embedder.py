"""Static embeddings (model2vec): a tokenizer plus the mean of rows of one matrix.

potion-base-8M (MIT, 256-d, ``minishlab``) distils a sentence transformer into one vector per
token: a text's embedding is the mean of its tokens' rows, L2-normalised. There is no network
to run, so a query costs ~0.1 ms and documents embed at ~15,000/s on one core, against 3-6 ms
and ~150/s for MiniLM on the same CPU (docs/BENCHMARKS.md).

The encoding follows ``model2vec.StaticModel.encode`` exactly (``tests/comparison`` checks it
to cosine >= 0.999): tokens without special tokens, at most ``max_length`` tokens, the unknown token
dropped, the text first cut to ``max_length * median token length``
characters, optional per-token weights, then the mean and, when the model's config says
``normalize``, L2 normalisation. A text with no known token embeds as the zero vector.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from indexer.errors import EmbedderError
from indexer.model_files import file_sha256

_DEFAULT_MAX_LENGTH = 512


class StaticEmbedder:
    """``Embedder`` over a model2vec directory (``model.safetensors`` + ``tokenizer.json``)."""

    def __init__(
        self,
        *,
        model_dir: Path,
        max_length: int = _DEFAULT_MAX_LENGTH,
        expected_sha256: str | None = None,
    ) -> None:
        if max_length < 1:
            raise ValueError(f"max_length must be positive, got {max_length}")
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        weights_path = model_dir / "model.safetensors"
        tokenizer_path = model_dir / "tokenizer.json"
        for path in (weights_path, tokenizer_path):
            if not path.is_file():
                raise EmbedderError(f"static model file missing: {path}")
        digest = file_sha256(weights_path)
        if expected_sha256 is not None and digest != expected_sha256:
            raise EmbedderError(f"sha256 mismatch for {weights_path}: {digest}")
        config = _read_config(model_dir / "config.json")
        try:
            tensors = load_file(str(weights_path))
        except (OSError, ValueError) as exc:
            raise EmbedderError(f"cannot read {weights_path}: {exc}") from exc
        if "embeddings" not in tensors:
            raise EmbedderError(f"{weights_path} has no 'embeddings' tensor")
        self._matrix = np.ascontiguousarray(tensors["embeddings"], dtype=np.float32)
        weights = tensors.get("weights")
        self._token_weights = None if weights is None else weights.astype(np.float32)
        mapping = tensors.get("mapping")
        self._mapping = None if mapping is None else mapping.astype(np.int64)

        tokenizer = Tokenizer.from_file(str(tokenizer_path))
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self._tokenizer = tokenizer
        self._unk_id = _unk_token_id(tokenizer)
        self._max_length = max_length
        self._max_chars = max_length * _median_token_length(tokenizer)
        self._normalize = bool(config.get("normalize", True))
        name = model_dir.resolve().name
        self._model_id = f"{name}-{digest[:12]}-static-max{max_length}"

    @property
    def dim(self) -> int:
        return int(self._matrix.shape[1])

    @property
    def model_id(self) -> str:
        return self._model_id

    def embed_query(self, text: str) -> npt.NDArray[np.float32]:
        return self.embed_batch([text]).reshape(-1)

    def embed_batch(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if len(texts) == 0:
            return out
        cut = [t[: self._max_chars] for t in texts]
        encodings = self._tokenizer.encode_batch_fast(cut, add_special_tokens=False)
        for row, enc in enumerate(encodings):
            ids = np.asarray(enc.ids[: self._max_length], dtype=np.int64)
            if self._unk_id is not None:
                ids = ids[ids != self._unk_id]
            if ids.size == 0:
                continue
            rows = ids if self._mapping is None else self._mapping[ids]
            vectors = self._matrix[rows]
            if self._token_weights is not None:
                vectors = vectors * self._token_weights[ids][:, None]
            out[row] = vectors.mean(axis=0)
        if self._normalize:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            out /= norms + 1e-32
        return out


def _read_config(path: Path) -> dict[str, object]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EmbedderError(f"cannot read {path}: {exc}") from exc
    return data if isinstance(data, dict) else {}


def _unk_token_id(tokenizer: object) -> int | None:
    model = getattr(tokenizer, "model", None)
    token = getattr(model, "unk_token", None)
    if token is None:
        return None
    token_to_id = getattr(tokenizer, "token_to_id", None)
    found = token_to_id(token) if callable(token_to_id) else None
    return int(found) if found is not None else None


def _median_token_length(tokenizer: object) -> int:
    """model2vec's character cut per token: the median length of the vocabulary's tokens."""
    get_vocab = getattr(tokenizer, "get_vocab", None)
    vocab: dict[str, int] = get_vocab() if callable(get_vocab) else {}
    return max(1, int(np.median([len(t) for t in vocab]))) if vocab else 1
