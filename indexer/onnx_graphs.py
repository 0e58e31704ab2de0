"""Which ONNX graph of a model to run on this CPU: measured once, then read from a record.

Candidates (all from one fp32 export, see ``onnx_embedder``):

``fp32``          the exported graph as is.
``int8``          ``onnx_quant.quantize_per_row``: per-channel int8 weights, per-row activations.
``int8-dynamic``  ``onnxruntime.quantization.quantize_dynamic`` (MatMulInteger, one activation
                  scale per tensor); fast where the CPU has VNNI, but a text's vector then
                  depends on the texts batched with it.

``measure`` first checks agreement: each candidate embeds ``AGREEMENT_TEXTS`` one at a time
and as one batch, and is accepted only if every row's cosine to the fp32 row is at least
``MIN_COSINE``. It then times the accepted ones round-robin (so load from other processes
falls on all of them alike) on a fixed workload, ``QUERIES`` one at a time plus ``DOCUMENTS``
as one batch, and picks the lowest median round time. The ``GraphRecord`` of that choice is
written as JSON next to the graph, under a name keyed by the CPU's instruction-set flags and
the onnxruntime version, so a cache directory shared by unlike machines holds one record per
kind of machine and none of them re-measures on later starts.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt

GraphVariant = Literal["fp32", "int8", "int8-dynamic"]
VARIANTS: tuple[GraphVariant, ...] = get_args(GraphVariant)
Embed = Callable[[Sequence[str]], npt.NDArray[np.float32]]

#: Lowest cosine to the fp32 embedding that any sample text may have, alone or batched.
MIN_COSINE = 0.98
#: Instruction-set flags (``/proc/cpuinfo``) that decide which integer kernels onnxruntime runs.
ISA_FLAGS = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8")

#: Short, odd and long texts: the per-tensor activation scale of ``int8-dynamic`` suffers most
#: on short ones ("ok", emoji), where [CLS] and [SEP] set the scale.
AGREEMENT_TEXTS = (
    "ok",
    "🙂 thanks!! 👍",
    "",
    "What did we decide about the Berlin trip next month?",
    "The meeting is at 3:45pm on 2024-05-06, room #12; bring $50!!!",
    "Der Hund läuft schnell über die Straße.",
    "東京タワーは高いです。",
    "Ok so um, like, I was thinking, you know, maybe we could, uh, go to the beach?",
    "A long conversation about gardening: tomatoes need full sun, regular watering, "
    "and staking once they grow tall; basil likes warmth; lettuce bolts in the heat.",
    " ".join(["We talked about the project timeline and the budget again."] * 8),
)
QUERIES = (
    "where did I park the car",
    "what did my sister say about her birthday party",
    "dentist appointment thursday",
    "Tell me everything I said about running a marathon in under four hours.",
)
DOCUMENTS = tuple(
    f"Speaker {i % 3}: "
    + " ".join(["we went over the budget, the timeline and who calls whom"] * n)
    for i, n in enumerate((1, 2, 3, 4, 2, 3, 5, 6))
)


@dataclass(frozen=True)
class Candidate:
    """One variant as measured: agreement with fp32, and times when accepted (else None)."""

    min_cosine: float
    accepted: bool
    query_ms: float | None = None
    doc_ms: float | None = None
    round_ms: float | None = None


@dataclass(frozen=True)
class GraphRecord:
    """What was chosen, from what, and on which machine: the JSON file's content."""

    chosen: GraphVariant
    file: str
    candidates: dict[str, Candidate]
    cpu_flags: list[str]
    cpu_model: str
    onnxruntime: str
    export_version: int
    threads: int
    min_cosine: float = MIN_COSINE
    measured_at: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> GraphRecord:
        raw = json.loads(text)
        if not isinstance(raw, dict) or raw.get("chosen") not in VARIANTS:
            raise ValueError("not a graph record")
        raw["candidates"] = {k: Candidate(**v) for k, v in raw["candidates"].items()}
        return cls(**raw)


def cpu_info(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[list[str], str]:
    """(the ``ISA_FLAGS`` this CPU has, its model name); ``([], platform)`` off Linux."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return [], platform.processor() or platform.machine()
    flags: set[str] = set()
    model = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags" and not flags:
            flags = set(value.split())
        elif key.strip() == "model name" and not model:
            model = value.strip()
    return [f for f in ISA_FLAGS if f in flags], model


def record_path(base: Path, cpu_flags: Sequence[str], ort_version: str) -> Path:
    """``{base}-graph-{key}.json``, ``key`` a short hash of the flags and onnxruntime version."""
    key = hashlib.sha256(json.dumps([list(cpu_flags), ort_version]).encode()).hexdigest()[:10]
    return base.with_name(f"{base.name}-graph-{key}.json")


def read_record(path: Path, *, cpu_flags: Sequence[str], ort_version: str) -> GraphRecord | None:
    """The record at ``path`` if it is readable and was measured on this kind of machine."""
    try:
        record = GraphRecord.from_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError, KeyError):
        return None
    if record.cpu_flags != list(cpu_flags) or record.onnxruntime != ort_version:
        return None
    return record


def write_record(path: Path, record: GraphRecord) -> None:
    """Write ``record`` to ``path`` atomically (temporary file, then rename)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(record.to_json())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def measure(
    embedders: Mapping[GraphVariant, Embed],
    *,
    rounds: int = 6,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[GraphVariant, Candidate]:
    """Check and time each embedder (``fp32`` required: the reference) as the module says."""
    if "fp32" not in embedders or rounds < 1:
        raise ValueError("measure needs an fp32 embedder and rounds >= 1")
    texts = list(AGREEMENT_TEXTS)
    reference = np.stack([embedders["fp32"]([t])[0] for t in texts])
    cosines: dict[GraphVariant, float] = {}
    for name, embed in embedders.items():
        singles = np.stack([embed([t])[0] for t in texts])
        batch = embed(texts)
        worst = min(float((singles * reference).sum(axis=1).min()),
                    float((batch * reference).sum(axis=1).min()))  # fmt: skip
        cosines[name] = 1.0 if name == "fp32" else worst
    accepted = [name for name in embedders if cosines[name] >= MIN_COSINE]
    samples: dict[GraphVariant, list[tuple[float, float]]] = {name: [] for name in accepted}
    for round_no in range(rounds + 1):  # round 0 warms up and is not counted
        for name in accepted:
            embed = embedders[name]
            start = clock()
            for query in QUERIES:
                embed([query])
            middle = clock()
            embed(DOCUMENTS)
            if round_no:
                samples[name].append((middle - start, clock() - middle))
    out: dict[GraphVariant, Candidate] = {}
    for name in embedders:
        if name not in samples:
            out[name] = Candidate(min_cosine=round(cosines[name], 5), accepted=False)
            continue
        q = statistics.median(s[0] for s in samples[name])
        d = statistics.median(s[1] for s in samples[name])
        total = statistics.median(s[0] + s[1] for s in samples[name])
        out[name] = Candidate(
            min_cosine=round(cosines[name], 5),
            accepted=True,
            query_ms=round(q * 1e3 / len(QUERIES), 3),
            doc_ms=round(d * 1e3 / len(DOCUMENTS), 3),
            round_ms=round(total * 1e3, 3),
        )
    return out


def pick(candidates: Mapping[GraphVariant, Candidate]) -> GraphVariant:
    """The accepted candidate with the lowest median round time; ties go to ``VARIANTS`` order."""
    timed = [
        (c.round_ms, VARIANTS.index(name), name)
        for name, c in candidates.items()
        if c.accepted and c.round_ms is not None
    ]
    if not timed:
        raise ValueError("no accepted candidate")
    return min(timed)[2]
