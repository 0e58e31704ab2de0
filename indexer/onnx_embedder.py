"""Embedder on onnxruntime + tokenizers: the fast CPU path (torch is needed only to export).

On first use the transformer is exported to ONNX (``torch.onnx.export`` of the Hugging Face
model, dynamic batch and sequence axes) and, by default, quantised to int8 (``onnx_quant``:
per-channel weights, per-row activations). The result is cached in ``cache_dir`` under a
name holding the sha256 of the source weights, written to a temporary file and renamed into
place, so two processes racing to export both end with a complete file.

Inference: tokenise (truncate to ``max_length``), sort the batch by length, pad each chunk of
``batch_size`` to its longest text, run, pool (mean over the attention mask, or [CLS], as the
model's ``1_Pooling`` config says), L2-normalise, and put the rows back in input order.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from indexer.errors import EmbedderError
from indexer.model_files import ModelFiles, resolve_model_dir
from indexer.onnx_quant import quantize_per_row

if TYPE_CHECKING:
    from tokenizers import Encoding

#: Bump when the exported graph or the quantisation changes, so old cache files are ignored.
EXPORT_VERSION = 2
_OPSET = 17
_INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


def export_onnx(model_dir: Path, out_path: Path, quantize: bool = True) -> None:
    """Export the model in ``model_dir`` to ``out_path`` (int8 if ``quantize``), atomically."""
    _export(resolve_model_dir(model_dir), out_path, quantize=quantize)


def _export(files: ModelFiles, out_path: Path, *, quantize: bool) -> None:
    out_path.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out_path.name}.", dir=out_path.parent))
    try:
        fp32 = work / "fp32.onnx"
        _export_fp32(files, fp32)
        final = fp32
        if quantize:
            final = work / "int8.onnx"
            quantize_per_row(fp32, final)
        os.replace(final, out_path)
    except (OSError, RuntimeError, ValueError, TypeError) as exc:
        raise EmbedderError(f"ONNX export of {files.root} failed: {exc}") from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _export_fp32(files: ModelFiles, out_path: Path) -> None:
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(
        str(files.transformer_dir), local_files_only=True, attn_implementation="eager"
    ).eval()

    class _LastHiddenState(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(
            self, input_ids: object, attention_mask: object, token_type_ids: object
        ) -> object:
            out = self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )
            return out.last_hidden_state

    # Two rows, one padded, so the traced graph keeps the attention-mask path.
    ids = torch.full((2, 16), 1000, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    axes = {0: "batch", 1: "sequence"}
    dynamic_axes = dict.fromkeys((*_INPUT_NAMES, "last_hidden_state"), axes)
    # The legacy TorchScript exporter (no onnxscript needed) warns about its deprecation and
    # about traced shape checks that are constant for this model; they are expected here.
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _LastHiddenState(),
            (ids, mask, torch.zeros_like(ids)),
            str(out_path),
            input_names=list(_INPUT_NAMES),
            output_names=["last_hidden_state"],
            dynamic_axes=dynamic_axes,
            opset_version=_OPSET,
            do_constant_folding=True,
            dynamo=False,
        )


class OnnxEmbedder:
    """``Embedder`` over an exported (and cached) ONNX model. Thread-safe."""

    def __init__(
        self,
        *,
        model_dir: Path,
        cache_dir: Path,
        quantize: bool = True,
        batch_size: int = 64,
        max_length: int = 128,
        threads: int | None = None,
        expected_sha256: str | None = None,
    ) -> None:
        if batch_size < 1 or max_length < 1 or (threads is not None and threads < 1):
            raise ValueError("batch_size, max_length and threads must be positive")
        import onnxruntime as ort
        from tokenizers import Tokenizer

        files = resolve_model_dir(model_dir, expected_sha256=expected_sha256)
        precision = "int8" if quantize else "fp32"
        self._batch_size = batch_size
        self._max_length = min(max_length, files.max_positions)
        self._model_id = files.model_id(f"onnx-{precision}", self._max_length)
        self.onnx_path = (
            cache_dir / f"{files.name}-{files.sha256[:16]}-v{EXPORT_VERSION}-{precision}.onnx"
        )
        #: True when this instance ran the export (the cache had no file yet).
        self.exported = not self.onnx_path.is_file()
        if self.exported:
            _export(files, self.onnx_path, quantize=quantize)

        tokenizer = Tokenizer.from_file(str(files.tokenizer))
        padding = tokenizer.padding
        self._pad_id = int(padding["pad_id"]) if padding else (tokenizer.token_to_id("[PAD]") or 0)
        tokenizer.no_padding()
        tokenizer.enable_truncation(self._max_length)
        self._tokenizer = tokenizer
        self._pooling = files.pooling

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or 0
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # No busy-waiting between runs: on a 2-core machine the spinning pool threads took the
        # cores from the dense scan and BM25 that follow a query embedding (docs/BENCHMARKS.md).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(
                str(self.onnx_path), options, providers=["CPUExecutionProvider"]
            )
        except (RuntimeError, OSError) as exc:
            raise EmbedderError(
                f"cannot load {self.onnx_path} (delete it to re-export): {exc}"
            ) from exc
        self._inputs = [i.name for i in self._session.get_inputs()]
        self._dim = int(self.embed_batch([""]).shape[1])

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
        encodings = self._tokenizer.encode_batch(list(texts))
        order = np.argsort([len(e.ids) for e in encodings], kind="stable")
        chunks = []
        for start in range(0, len(order), self._batch_size):
            rows = order[start : start + self._batch_size]
            chunks.append(self._run([encodings[i] for i in rows]))
        out = np.empty((len(texts), chunks[0].shape[1]), dtype=np.float32)
        out[order] = np.concatenate(chunks)
        return out

    def _run(self, encodings: Sequence[Encoding]) -> npt.NDArray[np.float32]:
        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(encodings), width), self._pad_id, dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, enc in enumerate(encodings):
            n = len(enc.ids)
            ids[row, :n] = enc.ids
            mask[row, :n] = 1
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        try:
            (hidden,) = self._session.run(["last_hidden_state"], {k: feed[k] for k in self._inputs})
        except RuntimeError as exc:
            raise EmbedderError(f"onnxruntime failed: {exc}") from exc
        return _pool_normalise(np.asarray(hidden, dtype=np.float32), mask, self._pooling)


def _pool_normalise(
    hidden: npt.NDArray[np.float32], mask: npt.NDArray[np.int64], pooling: str
) -> npt.NDArray[np.float32]:
    if pooling == "cls":
        pooled: npt.NDArray[np.float32] = hidden[:, 0, :]
    else:
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    out: npt.NDArray[np.float32] = (pooled / np.maximum(norms, 1e-12)).astype(np.float32)
    return out
