"""Build the running system from `Settings`: the only place that knows every package.

Settings ─▶ store (PostgreSQL: configured, or embedded in data_dir/pg)
         ─▶ embedder (static potion-base-8M by default; MiniLM ONNX or torch; a model dir)
         ─▶ re-embed the store if its vectors are another model's (indexer.reembed)
         ─▶ index tier (convmem.tiers): in process (tantivy BM25 + FAISS ◀─ snapshot in
            data_dir/index), or Milvus / OpenSearch ◀─ change feed
         ─▶ ingestor, searcher ─▶ Services
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from convmem.compute_threads import limit_compute_threads
from convmem.settings import Settings
from convmem.tiers import build_shard as build_shard  # re-exported: the scale bench uses it
from convmem.tiers import build_tier, rebuild_if_foreign
from indexer.embedded_pg import EmbeddedPostgres
from indexer.embedders import load_embedder
from indexer.errors import SnapshotError
from indexer.ingest import MAX_BATCH, EmbedView, Ingestor, vector_id
from indexer.loaders import read_jsonl
from indexer.models import UtteranceIn
from indexer.pg_store import PgStore
from indexer.protocols import CrossEncoder, Embedder, VectorIndex
from indexer.reembed import conform, reembed_store
from indexer.shard import IndexShard
from indexer.snapshot import load_snapshot, save_snapshot
from indexer.tailer import ChangeFeedTailer
from query_service.auth import Authenticator
from query_service.searcher import Searcher, SearchParams
from query_service.services import Services

if TYPE_CHECKING:
    from fastapi import APIRouter, FastAPI

    from audio_ingest.protocols import Transcriber

_log = logging.getLogger(__name__)
DEMO_TENANT = "default"


def database_url(settings: Settings, closers: list[Callable[[], None]]) -> str:
    """The configured URL, or start the embedded PostgreSQL in ``data_dir/pg``."""
    if settings.postgres.url is not None:
        return settings.postgres.url.get_secret_value()
    pg = EmbeddedPostgres(data_dir=settings.data_dir / "pg")
    url = pg.start()
    closers.append(pg.stop)
    return url


def build_embedder(settings: Settings) -> Embedder:
    e = settings.embedder
    return load_embedder(
        e.kind,
        model_path=e.model_path,
        cache_dir=e.cache_dir or settings.data_dir / "models",
        model_home=e.model_home,
        quantize=e.quantize,
        graph=e.graph,
        threads=e.threads,
        query_cache=e.query_cache,
        device=e.device,
    )


def search_params(settings: Settings) -> SearchParams:
    """The ranking settings as the searcher's parameters (``RankingParams`` mirrors them)."""
    return SearchParams(
        **settings.ranking.model_dump(), reserve_s=settings.budgets.reserve_ms / 1000
    )


def build_services(settings: Settings, *, embedder: Embedder | None = None) -> Services:
    limit_compute_threads(settings.index.compute_threads)
    closers: list[Callable[[], None]] = []
    try:
        store = PgStore.connect(
            database_url(settings, closers), max_size=settings.postgres.pool_max
        )
        closers.append(store.close)
        embedder = embedder or build_embedder(settings)
        view = settings.index.embed_view
        vectors = vector_id(embedder.model_id, view)  # what the index's vectors are
        reembed_if_needed(store, embedder, vectors=vectors, view=view)
        store_id = store.store_id()  # a snapshot of another store (or before a restore): unused
        shard = build_tier(settings, embedder.dim, closers)
        snapshot = None
        if isinstance(shard, IndexShard):
            snapshot = snapshot_saver(
                shard, settings, vectors=vectors, dim=embedder.dim, store_id=store_id
            )
        elif settings.index.feed:
            rebuild_if_foreign(shard, f"{store_id}|{vectors}")
        tailer = ChangeFeedTailer(
            store=store,
            shard=shard,
            poll_interval_s=settings.index.poll_interval_ms / 1000,
            snapshot=snapshot,
            snapshot_interval_s=settings.index.snapshot_interval_s,
            conform=lambda changes: conform(changes, embedder, vectors=vectors, view=view),
            apply=settings.index.feed,
        )
        ingestor = Ingestor(store=store, embedder=embedder, on_commit=tailer.poke, view=view)
        if settings.demo_data and store.max_seq() == 0:
            n = load_utterances(ingestor, DEMO_TENANT, read_jsonl(demo_path()))
            _log.info("loaded %d demo utterances into tenant %r", n, DEMO_TENANT)
        tailer.catch_up()
        tailer.start()
        if isinstance(shard, IndexShard):
            closers.append(start_ann_builder(shard.vector, settings.index.ann_build_interval_s))
        cross_encoder = build_cross_encoder(settings)
        searcher = Searcher(
            shard=shard,
            embedder=embedder,
            params=search_params(settings),
            wait_for_seq=tailer.wait_for,
            cross_encoder=cross_encoder,
        )
        closers.append(searcher.close)
    except BaseException:
        for close in reversed(closers):
            close()
        raise
    return Services(
        store=store,
        embedder=embedder,
        shard=shard,
        tailer=tailer,
        ingestor=ingestor,
        searcher=searcher,
        closers=closers,
        cross_encoder=cross_encoder,
    )


def snapshot_saver(
    shard: IndexShard, settings: Settings, *, vectors: str, dim: int, store_id: str
) -> Callable[[], None]:
    """Load the snapshot in ``data_dir/index`` into ``shard`` if it is usable, and return
    what writes it again (the tailer calls it every ``snapshot_interval_s``)."""
    snap_dir = settings.data_dir / "index"
    try:
        info = load_snapshot(shard, snap_dir, model_id=vectors, dim=dim, store_id=store_id)
        _log.info("loaded snapshot: %d docs at seq %d", info.count, info.seq)
    except SnapshotError as exc:
        _log.info("no usable snapshot (%s): building from the store", exc)

    def snapshot() -> None:
        save_snapshot(shard, snap_dir, model_id=vectors, dim=dim, store_id=store_id)

    return snapshot


def reembed_if_needed(store: PgStore, embedder: Embedder, *, vectors: str, view: EmbedView) -> int:
    """Bring every stored vector to ``vectors`` (a new model or view), with a progress bar."""
    from tqdm import tqdm

    bar: tqdm[NoReturn] | None = None

    def advance(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:  # the first call, before any work: there is something to re-embed
            _log.info("re-embedding %d stored utterances for %s", total, vectors)
            bar = tqdm(total=total, desc="re-embedding", unit="utt", disable=None)
        bar.update(done - bar.n)

    done = reembed_store(store, embedder, vectors=vectors, view=view, progress=advance)
    if bar is not None:
        bar.close()
        _log.info("re-embedded %d utterances", done)
    return done


def build_cross_encoder(settings: Settings) -> CrossEncoder | None:
    """The configured cross-encoder reranker, or None (the default: none ships offline)."""
    ce = settings.cross_encoder
    if ce.path is None:
        return None
    from indexer.cross_encoder import LocalCrossEncoder

    _log.info("loading cross-encoder from %s on %s", ce.path, ce.device)
    return LocalCrossEncoder(ce.path, device=ce.device, max_length=ce.max_length)


def start_ann_builder(vector: VectorIndex, interval_s: float) -> Callable[[], None]:
    """Build ANN graphs off the query and feed paths, every ``interval_s``; returns a stopper."""
    build = getattr(vector, "maybe_build_ann", None)
    stop = threading.Event()
    if build is None:
        return stop.set

    def loop() -> None:
        while not stop.wait(interval_s):
            try:
                build()
            except Exception:  # noqa: BLE001 - a failed build leaves exact search in place
                _log.exception("ANN build failed")

    threading.Thread(target=loop, name="convmem-ann", daemon=True).start()
    return stop.set


def demo_path() -> Path:
    return Path(str(resources.files("indexer").joinpath("demo/demo.jsonl")))


def load_utterances(
    ingestor: Ingestor,
    tenant: str,
    utterances: Iterable[UtteranceIn],
    *,
    batch_size: int = 256,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Ingest in batches; returns how many were accepted."""
    total = 0
    batch: list[UtteranceIn] = []
    for u in utterances:
        batch.append(u)
        if len(batch) >= min(batch_size, MAX_BATCH):
            total += ingestor.ingest(tenant, batch).accepted
            if progress:
                progress(len(batch))
            batch = []
    if batch:
        total += ingestor.ingest(tenant, batch).accepted
        if progress:
            progress(len(batch))
    return total


def build_app(settings: Settings) -> FastAPI:
    """The served application: REST, the web page, the audio WebSocket, and gRPC (if on)."""
    from query_service.app import Companion, create_app

    companions: list[Companion] = []
    if settings.grpc.port != 0:
        from query_service.grpc_server import GrpcServer

        companions.append(
            GrpcServer(
                host=settings.host,
                port=settings.grpc.port,
                max_message_bytes=settings.admission.max_body_bytes,
                max_concurrent_rpcs=settings.grpc.max_concurrent_rpcs,
            )
        )
    return create_app(
        services_factory=lambda: build_services(settings),
        auth=build_auth(settings),
        routers=[audio_router_for(settings)],
        admission=settings.admission.params(),
        max_body_bytes=settings.admission.max_body_bytes,
        companions=companions,
        rates=settings.limits.rates(),
        sessions=settings.limits.sessions(),
    )


def audio_router_for(
    settings: Settings, load_transcriber: Callable[[], Transcriber] | None = None
) -> APIRouter:
    """``/v1/audio/stream`` configured from ``settings.audio`` (models load on first use)."""
    from audio_ingest.session import StreamLimits
    from audio_ingest.ws import VadOptions, audio_router

    a = settings.audio
    return audio_router(
        load_transcriber=load_transcriber or (lambda: build_transcriber(settings)),
        limits=StreamLimits(
            max_frame_bytes=a.max_frame_bytes,
            max_session_s=a.max_session_s,
            max_lag_s=a.max_lag_s,
            max_queued=a.max_queued,
            partial_interval_s=a.partial_interval_s,
        ),
        vad=VadOptions(
            threshold=a.vad_threshold,
            min_silence_ms=a.min_silence_ms,
            max_utterance_s=a.max_utterance_s,
        ),
    )


def build_transcriber(settings: Settings) -> Transcriber:
    from audio_ingest.transcriber import WhisperTranscriber

    a = settings.audio
    return WhisperTranscriber(
        model=a.model,
        cache_dir=settings.embedder.cache_dir or settings.data_dir / "models",
        device=a.device,
        compute_type=a.compute_type,
        beam_size=a.beam_size,
        threads=a.threads,
    )


def build_auth(settings: Settings) -> Authenticator:
    """The configured keys: the hashed key file and/or ``CONVMEM_API_KEYS`` (open if none)."""
    from query_service.auth import AnyOf, KeyRing
    from query_service.key_file import KeyFile

    ring = KeyRing(settings.key_map())
    if settings.api_keys_file is None:
        return ring
    assert settings.api_key_pepper is not None  # the settings validator checks it
    keys = KeyFile(settings.api_keys_file, pepper=settings.api_key_pepper.get_secret_value())
    return keys if ring.open else AnyOf([keys, ring])
