"""The scale benchmark's corpus: N utterances of U users of one tenant, embedded and cached.

Users' sizes follow a Zipf law over their rank, on top of a floor of one shortest
conversation each: ``size(r) = MIN_TURNS + (N - MIN_TURNS·U) · r^-s / Σ_j j^-s``, rounded so
they sum to N, and dealt to users in a shuffled order. With the default ``s = 0.63`` the
largest of 10,000 users at 1M holds ~10k utterances and the median user ~70. Each user's
utterances are split into conversations of 20-300 turns (log-uniform), the user and the agent
taking turns, 3-20 s apart; conversations start hours to days apart. Texts come from the
template grammar of ``eval.scale_text``. Rows are in time order, as a corpus ingested live
would be, and utterance ``i`` has uid ``i + 1``.

The embedded corpus is cached as one ``.npz`` (no pickle) named by a hash of everything that
makes it, so a rerun loads it instead of generating and embedding again.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import sys
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from eval.scale_text import Talk
from indexer.models import Filters, Role
from indexer.protocols import Embedder
from indexer.records import DocRecord

#: bump when the generator changes: it is part of the cache key
GENERATOR_VERSION = 1
TENANT = "scale"
MIN_TURNS, MAX_TURNS = 20, 300
AGENT = "Agent"
#: the user's speaker name is one of these (none is an everyday English word)
NAMES = (
    "Maya Liam Priya Noah Elena Omar Sofia Lucas Aisha Mateo Hana Ethan Zara Diego Chloe Ravi "
    "Ingrid Tomas Leila Kenji Amara Felix Nadia Hugo Yara Arjun Clara Samir Freya Marco Ines "
    "Tariq Lena Oscar Mei Jonas Anya Rafael Keiko Malik"
).split()
EMBED_BATCH = 1024


@dataclass(frozen=True, slots=True)
class CorpusSpec:
    size: int
    users: int
    seed: int = 0
    zipf: float = 0.63

    def __post_init__(self) -> None:
        if self.users < 1 or self.size < MIN_TURNS * self.users:
            raise ValueError(
                f"need users >= 1 and size >= {MIN_TURNS} x users (one shortest conversation"
                f" each), got size {self.size}, users {self.users}"
            )
        if not (self.zipf >= 0 and math.isfinite(self.zipf)):
            raise ValueError(f"zipf must be a finite number >= 0, got {self.zipf}")


def user_sizes(spec: CorpusSpec) -> npt.NDArray[np.int64]:
    """Utterances per user (index = user number), summing to ``spec.size``."""
    ranks = np.arange(1, spec.users + 1, dtype=np.float64)
    w = np.power(ranks, -spec.zipf)
    share = (spec.size - MIN_TURNS * spec.users) * w / w.sum()
    sizes: npt.NDArray[np.int64] = np.floor(share).astype(np.int64)
    short = spec.size - MIN_TURNS * spec.users - int(sizes.sum())
    sizes[np.argsort(sizes - share, kind="stable")[:short]] += 1  # largest remainders
    sizes += MIN_TURNS
    np.random.default_rng(spec.seed).shuffle(sizes)
    return sizes


def conversation_lengths(total: int, rng: random.Random) -> list[int]:
    """Split ``total`` (>= MIN_TURNS) turns into conversations of MIN_TURNS..MAX_TURNS."""
    out: list[int] = []
    left = total
    while left > 0:
        if left <= MAX_TURNS:
            n = left
        else:
            n = round(math.exp(rng.uniform(math.log(MIN_TURNS), math.log(MAX_TURNS))))
            if left - n < MIN_TURNS:
                n = left - MIN_TURNS
        out.append(n)
        left -= n
    return out


@dataclass(frozen=True)
class Corpus:
    """Column arrays, one row per utterance, in time order (row ``i`` is uid ``i + 1``)."""

    spec: CorpusSpec
    texts: list[str]
    user: npt.NDArray[np.int32]
    conv: npt.NDArray[np.int32]
    turn: npt.NDArray[np.int32]
    agent: npt.NDArray[np.bool_]
    started: npt.NDArray[np.float64]  # unix seconds
    vectors: npt.NDArray[np.float32]
    model_id: str

    def __len__(self) -> int:
        return len(self.texts)

    @staticmethod
    def user_id(user: int) -> str:
        return f"user-{user:05d}"

    @staticmethod
    def conversation_id(conv: int) -> str:
        return f"conv-{conv:07d}"

    def speaker(self, row: int) -> str:
        return AGENT if self.agent[row] else NAMES[int(self.user[row]) % len(NAMES)]

    def conversations(self) -> int:
        return int(self.conv.max()) + 1 if len(self) else 0

    def record(self, row: int) -> DocRecord:
        """Row ``row`` as a record, with uid ``row + 1`` (every tier loads it so)."""
        uid = row + 1
        return DocRecord(
            uid=uid,
            tenant=TENANT,
            id=f"utt-{uid:08d}",
            conversation_id=self.conversation_id(int(self.conv[row])),
            user_id=self.user_id(int(self.user[row])),
            turn=int(self.turn[row]),
            speaker=self.speaker(row),
            role=Role.AGENT if self.agent[row] else Role.USER,
            text=self.texts[row],
            started_at=datetime.fromtimestamp(float(self.started[row]), UTC),
        )


@dataclass(frozen=True, slots=True)
class Scope:
    """A search scope of the benchmark: its filters, and the rows it holds (for the exact
    search; empty where only the count is known)."""

    name: str
    filters: Filters
    docs: int
    rows: npt.NDArray[np.int64]


def scopes(corpus: Corpus) -> list[Scope]:
    """The largest user, the median user (by size) and the whole tenant."""
    sizes = np.bincount(corpus.user, minlength=corpus.spec.users)
    by_size = np.argsort(sizes, kind="stable")
    out = []
    for name, u in (
        ("large_user", int(by_size[-1])),
        ("median_user", int(by_size[len(by_size) // 2])),
    ):
        rows = np.flatnonzero(corpus.user == u)
        out.append(Scope(name, Filters(tenant=TENANT, user_id=corpus.user_id(u)), len(rows), rows))
    everyone = np.arange(len(corpus), dtype=np.int64)
    return [*out, Scope("tenant", Filters(tenant=TENANT), len(corpus), everyone)]


def generate(spec: CorpusSpec) -> Corpus:
    """The corpus's texts and columns, in time order, without vectors (0 columns)."""
    rng = random.Random(f"scale-corpus-{spec.seed}")
    talk = Talk(rng)
    t0 = 1_735_689_600.0  # 2025-01-01 UTC
    texts: list[str] = []
    users: list[int] = []
    convs: list[int] = []
    turns: list[int] = []
    started: list[float] = []
    conv = 0
    sizes = user_sizes(spec)
    for user in tqdm(range(spec.users), desc="corpus", unit="user", file=sys.stderr):
        at = t0 + rng.uniform(0, 180 * 86_400)
        for length in conversation_lengths(int(sizes[user]), rng):
            topic = talk.topic()
            for turn in range(length):
                if rng.random() < 0.08:
                    topic = talk.topic()  # the talk drifts
                texts.append(talk.agent_turn(topic) if turn % 2 else talk.user_turn(topic))
                users.append(user)
                convs.append(conv)
                turns.append(turn)
                started.append(at)
                at += rng.uniform(3, 20)
            at += rng.uniform(3_600, 5 * 86_400)
            conv += 1
    turn_a = np.asarray(turns, dtype=np.int32)
    conv_a = np.asarray(convs, dtype=np.int32)
    started_a = np.asarray(started, dtype=np.float64)
    order = np.lexsort((turn_a, conv_a, started_a))
    return Corpus(
        spec=spec,
        texts=[texts[i] for i in order],
        user=np.asarray(users, dtype=np.int32)[order],
        conv=conv_a[order],
        turn=turn_a[order],
        agent=(turn_a % 2 == 1)[order],
        started=started_a[order],
        vectors=np.empty((len(texts), 0), dtype=np.float32),
        model_id="",
    )


def embed_texts(embedder: Embedder, texts: list[str]) -> npt.NDArray[np.float32]:
    """Every text embedded (the ``text`` view, as the service embeds by default), batched."""
    out = np.empty((len(texts), embedder.dim), dtype=np.float32)
    for i in tqdm(range(0, len(texts), EMBED_BATCH), desc="embed", unit="batch", file=sys.stderr):
        out[i : i + EMBED_BATCH] = embedder.embed_batch(texts[i : i + EMBED_BATCH])
    return out


def cache_path(cache_dir: Path, spec: CorpusSpec, model_id: str) -> Path:
    key = json.dumps({"v": GENERATOR_VERSION, "model": model_id, **asdict(spec)}, sort_keys=True)
    return cache_dir / f"scale-{spec.size}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.npz"


def save(corpus: Corpus, path: Path) -> None:
    """Write ``corpus`` to ``path`` atomically: columns, vectors and texts as one UTF-8 blob."""
    encoded = [t.encode("utf-8") for t in corpus.texts]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    meta = json.dumps({"spec": asdict(corpus.spec), "model_id": corpus.model_id})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    with tmp.open("wb") as fh:
        np.savez(
            fh,
            meta=np.array(meta),
            text_blob=np.frombuffer(b"".join(encoded), dtype=np.uint8),
            text_offsets=offsets,
            user=corpus.user,
            conv=corpus.conv,
            turn=corpus.turn,
            agent=corpus.agent,
            started=corpus.started,
            vectors=corpus.vectors,
        )
    os.replace(tmp, path)


def load(path: Path) -> Corpus:
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        blob = z["text_blob"].tobytes()
        off = z["text_offsets"]
        texts = [blob[off[i] : off[i + 1]].decode("utf-8") for i in range(len(off) - 1)]
        return Corpus(
            spec=CorpusSpec(**meta["spec"]),
            texts=texts,
            user=z["user"],
            conv=z["conv"],
            turn=z["turn"],
            agent=z["agent"],
            started=z["started"],
            vectors=z["vectors"],
            model_id=meta["model_id"],
        )


def load_or_build(
    spec: CorpusSpec, embedder: Embedder, cache_dir: Path
) -> tuple[Corpus, Path, bool]:
    """The cached corpus for ``spec`` and this embedder, or generate, embed and cache it.
    Returns it, its cache file, and whether it came from the cache."""
    path = cache_path(cache_dir, spec, embedder.model_id)
    if path.exists():
        return load(path), path, True
    corpus = generate(spec)
    corpus = replace(
        corpus, vectors=embed_texts(embedder, corpus.texts), model_id=embedder.model_id
    )
    save(corpus, path)
    return corpus, path, False
