"""Embedder on onnxruntime + tokenizers: the fast CPU path (torch is needed only to export).

On first use the transformer is exported to ONNX (``torch.onnx.export`` of the Hugging Face
model, dynamic batch and sequence axes). With ``quantize`` (the default) the quantised
variants are built from it too, and ``onnx_graphs`` measures them against fp32 on this CPU:
the fastest one whose embeddings agree with fp32 is kept, and the choice is written to a JSON
record that later starts read instead of measuring again. ``quantize=False`` runs fp32; a
``graph`` other than ``"auto"`` forces that variant. Graphs are cached in ``cache_dir`` as
``{model}-{sha256[:16] of the weights}-v{EXPORT_VERSION}-{variant}.onnx``, written to a
temporary file and renamed into place, so two processes racing to export both end with a
complete file. ``model_id`` names the variant (``onnx-fp32``, ``onnx-int8``,
``onnx-int8-dynamic``), so index snapshots record which graph made their vectors.

Inference: tokenise (truncate to ``max_length``; no padding, whatever ``tokenizer.json``
says), sort the batch by length, pad each chunk of ``batch_size`` to its longest text, run,
pool (mean over the attention mask, or [CLS], as the model's ``1_Pooling`` config says),
L2-normalise, and put the rows back in input order.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt

from indexer.errors import EmbedderError
from indexer.model_files import ModelFiles, resolve_model_dir
from indexer.onnx_graphs import (
    GraphRecord,
    GraphVariant,
    cpu_info,
    measure,
    pick,
    read_record,
    record_path,
    write_record,
)
from indexer.onnx_quant import quantize_dynamic_int8, quantize_per_row

if TYPE_CHECKING:
    import onnxruntime as ort
    from tokenizers import Encoding

#: Bump when the exported graph or the quantisation changes, so old cache files are ignored.
EXPORT_VERSION = 3
_OPSET = 17
_INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
_BUILD_ERRORS = (OSError, RuntimeError, ValueError, TypeError)

GraphChoice = Literal["auto", GraphVariant]
_log = logging.getLogger(__name__)


def export_onnx(model_dir: Path, out_path: Path, quantize: bool = True) -> None:
    """Export the model in ``model_dir`` to ``out_path`` (per-row int8 if ``quantize``)."""
    files = resolve_model_dir(model_dir)
    if not quantize:
        _atomic(out_path, lambda tmp: _export_fp32(files, tmp), files)
        return

    def build(tmp: Path) -> None:
        _export_fp32(files, tmp.with_suffix(".fp32"))
        quantize_per_row(tmp.with_suffix(".fp32"), tmp)

    _atomic(out_path, build, files)


def _atomic(out_path: Path, build: Callable[[Path], None], files: ModelFiles) -> None:
    """Run ``build(tmp)`` in a scratch folder beside ``out_path``, then rename into place."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out_path.name}.", dir=out_path.parent))
    try:
        tmp = work / "graph.onnx"
        build(tmp)
        os.replace(tmp, out_path)
    except _BUILD_ERRORS as exc:
        raise EmbedderError(f"ONNX export of {files.root} failed: {exc}") from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _quantise(variant: GraphVariant, fp32: Path, out: Path, cpu_flags: Sequence[str]) -> None:
    if variant == "int8":
        quantize_per_row(fp32, out)
    elif variant == "int8-dynamic":
        vnni = bool({"avx512_vnni", "avx_vnni"} & set(cpu_flags))
        quantize_dynamic_int8(fp32, out, signed_weights=vnni)
    else:
        raise ValueError(f"{variant} is not a quantised variant")


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


@dataclass(frozen=True)
class _Graph:
    session: ort.InferenceSession
    inputs: tuple[str, ...]


class OnnxEmbedder:
    """``Embedder`` over an exported (and cached) ONNX model. Thread-safe.

    ``quantize`` allows quantised graphs (``False``: fp32 only); ``graph="auto"`` picks among
    the allowed ones by measuring (once per kind of CPU, see ``onnx_graphs``), and a variant
    name forces that one. The ``graph`` property says which runs.
    """

    def __init__(
        self,
        *,
        model_dir: Path,
        cache_dir: Path,
        quantize: bool = True,
        graph: GraphChoice = "auto",
        batch_size: int = 64,
        max_length: int = 128,
        threads: int | None = None,
        expected_sha256: str | None = None,
    ) -> None:
        if batch_size < 1 or max_length < 1 or (threads is not None and threads < 1):
            raise ValueError("batch_size, max_length and threads must be positive")
        if graph not in ("auto", "fp32", "int8", "int8-dynamic"):
            raise ValueError(f"unknown graph {graph!r}")
        if not quantize and graph not in ("auto", "fp32"):
            raise ValueError(f"graph={graph!r} is quantised but quantize=False")
        from tokenizers import Tokenizer

        files = resolve_model_dir(model_dir, expected_sha256=expected_sha256)
        self._files = files
        self._threads = threads or 0
        self._batch_size = batch_size
        self._max_length = min(max_length, files.max_positions)
        self._cache_dir = cache_dir
        self._base = cache_dir / f"{files.name}-{files.sha256[:16]}-v{EXPORT_VERSION}"

        tokenizer = Tokenizer.from_file(str(files.tokenizer))
        padding = tokenizer.padding
        self._pad_id = int(padding["pad_id"]) if padding else (tokenizer.token_to_id("[PAD]") or 0)
        # tokenizer.json of all-MiniLM-L6-v2 pads every text to 128 tokens: each batch is
        # padded to its own longest text in ``_run`` instead.
        tokenizer.no_padding()
        tokenizer.enable_truncation(self._max_length)
        self._tokenizer = tokenizer
        self._pooling = files.pooling

        #: True when this instance wrote a graph file (the cache had none for its choice).
        self.exported = False
        #: True when this instance measured the candidates (no record for this machine yet).
        self.measured = False
        #: The JSON record of the measured choice (``None`` when no choice was made).
        self.record_path: Path | None = None
        if not quantize or graph == "fp32":
            variant: GraphVariant = "fp32"
        elif graph == "auto":
            variant = self._choose()
        else:
            variant = graph
        self._variant = variant
        self.onnx_path = self._graph_path(variant)
        if not self.onnx_path.is_file():
            self._build(variant)
        self._graph = self._open(self.onnx_path)
        self._model_id = files.model_id(f"onnx-{variant}", self._max_length)
        self._dim = int(self.embed_batch([""]).shape[1])

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def graph(self) -> GraphVariant:
        """The graph variant this instance runs: ``fp32``, ``int8`` or ``int8-dynamic``."""
        return self._variant

    def embed_query(self, text: str) -> npt.NDArray[np.float32]:
        return self.embed_batch([text]).reshape(-1)

    def embed_batch(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        return self._embed(self._graph, texts)

    # --- graphs ------------------------------------------------------------------------

    def _graph_path(self, variant: GraphVariant) -> Path:
        return self._base.with_name(f"{self._base.name}-{variant}.onnx")

    def _build(self, variant: GraphVariant) -> None:
        fp32 = self._graph_path("fp32")
        if not fp32.is_file():
            _atomic(fp32, lambda tmp: _export_fp32(self._files, tmp), self._files)
            self.exported = True
        if variant != "fp32":
            flags, _ = cpu_info()
            _atomic(
                self._graph_path(variant),
                lambda tmp: _quantise(variant, fp32, tmp, flags),
                self._files,
            )
            self.exported = True

    def _choose(self) -> GraphVariant:
        """The variant in this machine's record, or measure the candidates and write one."""
        import onnxruntime as ort

        flags, cpu_model = cpu_info()
        self.record_path = record_path(self._base, flags, ort.__version__)
        record = read_record(self.record_path, cpu_flags=flags, ort_version=ort.__version__)
        if record is not None and record.file == self._graph_path(record.chosen).name:
            if self._graph_path(record.chosen).is_file():
                _log.info("ONNX graph %s (recorded in %s)", record.chosen, self.record_path.name)
                return record.chosen
        self.measured = True
        self._build("fp32")
        fp32 = self._graph_path("fp32")
        work = Path(tempfile.mkdtemp(prefix=f".{self._base.name}.measure.", dir=self._cache_dir))
        try:
            paths: dict[GraphVariant, Path] = {"fp32": fp32}
            for variant in ("int8", "int8-dynamic"):
                paths[variant] = work / f"{variant}.onnx"
                _quantise(variant, fp32, paths[variant], flags)
            graphs = {variant: self._open(path) for variant, path in paths.items()}
            candidates = measure({variant: self._embedder_on(g) for variant, g in graphs.items()})
            del graphs
            chosen = pick(candidates)
            if chosen != "fp32":
                os.replace(paths[chosen], self._graph_path(chosen))
                self.exported = True
        except _BUILD_ERRORS as exc:
            raise EmbedderError(
                f"measuring ONNX graphs of {self._files.root} failed: {exc}"
            ) from exc
        finally:
            shutil.rmtree(work, ignore_errors=True)
        write_record(
            self.record_path,
            GraphRecord(
                chosen=chosen,
                file=self._graph_path(chosen).name,
                candidates={str(k): v for k, v in candidates.items()},
                cpu_flags=flags,
                cpu_model=cpu_model,
                onnxruntime=ort.__version__,
                export_version=EXPORT_VERSION,
                threads=self._threads,
            ),
        )
        timings = ", ".join(
            f"{name} {c.query_ms} ms/query {c.doc_ms} ms/doc"
            if c.accepted
            else f"{name} rejected (cosine {c.min_cosine})"
            for name, c in candidates.items()
        )
        _log.info("ONNX graph %s chosen by measuring: %s", chosen, timings)
        return chosen

    def _open(self, path: Path) -> _Graph:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self._threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # No busy-waiting between runs: on a 2-core machine the spinning pool threads took the
        # cores from the dense scan and BM25 that follow a query embedding (docs/BENCHMARKS.md).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except (RuntimeError, OSError) as exc:
            raise EmbedderError(f"cannot load {path} (delete it to re-export): {exc}") from exc
        return _Graph(session, tuple(i.name for i in session.get_inputs()))

    def _embedder_on(self, graph: _Graph) -> Callable[[Sequence[str]], npt.NDArray[np.float32]]:
        return lambda texts: self._embed(graph, texts)

    # --- inference ---------------------------------------------------------------------

    def _embed(self, graph: _Graph, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        if len(texts) == 0:
            return np.zeros((0, self._dim), dtype=np.float32)
        encodings = self._tokenizer.encode_batch(list(texts))
        order = np.argsort([len(e.ids) for e in encodings], kind="stable")
        chunks = []
        for start in range(0, len(order), self._batch_size):
            rows = order[start : start + self._batch_size]
            chunks.append(self._run(graph, [encodings[i] for i in rows]))
        out = np.empty((len(texts), chunks[0].shape[1]), dtype=np.float32)
        out[order] = np.concatenate(chunks)
        return out

    def _run(self, graph: _Graph, encodings: Sequence[Encoding]) -> npt.NDArray[np.float32]:
        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(encodings), width), self._pad_id, dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, enc in enumerate(encodings):
            n = len(enc.ids)
            ids[row, :n] = enc.ids
            mask[row, :n] = 1
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        try:
            (hidden,) = graph.session.run(["last_hidden_state"], {k: feed[k] for k in graph.inputs})
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
