"""The Milvus tier's two collections, and rows to and from ``DocRecord``.

``<name>`` holds one row per live utterance: its display fields, its filter keys
(``indexer.milvus_keys``), the text and the window key (the turn before and this one) each with
a BM25 function into a sparse field, the dense vector, and ``turn``/``started_at`` for turn
order. ``<name>_meta`` holds the change feed's cursor and the speakers of every scope (what
``IndexShard`` keeps in memory), so no replica needs the corpus.

Multi-tenancy: ``tenant_k`` is the partition key when ``partition_key`` is on (production):
every search names the tenant, so Milvus searches only the partitions that tenant hashes to,
and a tenant's data never shares a scan with most other tenants'. The tenant, not the user, is
the key because it is in every query (user scope is optional: tenant-wide search exists) and is
the isolation boundary. milvus-lite 2.5.1 rejects every filter on a collection with a partition
key (milvus-io/milvus#43163), so the embedded default turns it off; the tenant clause is in
every expression either way, so isolation never depends on it.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import numpy.typing as npt

from indexer.milvus_keys import conv_turn, key, user_key
from indexer.models import Role
from indexer.records import DocRecord
from ranking.question_prior import is_question

if TYPE_CHECKING:
    from pymilvus import CollectionSchema, MilvusClient
    from pymilvus.milvus_client.index import IndexParams

#: Milvus VARCHAR limits are bytes; text is at most 10,000 characters (4 bytes each at worst)
TEXT_BYTES = 40_000
WINDOW_BYTES = 65_535
KEY_BYTES = 2_048  # a 256-character id in base64 of UTF-8
META_DIM = 2  # Milvus wants a vector in every collection; the meta rows carry a dummy one

ANALYZER = {
    "tokenizer": "standard",
    "filter": ["lowercase", {"type": "stemmer", "language": "english"}],
}

#: every field a record is made from
RECORD_FIELDS = [
    "uid",
    "tenant",
    "id",
    "conversation_id",
    "user_id",
    "turn",
    "speaker",
    "role",
    "text",
    "started_iso",
]
#: what a read keeps of a row (``indexer.milvus_memo.Row``)
ROW_FIELDS = [*RECORD_FIELDS, "is_question", "ct"]
#: what a search returns with each hit (``indexer.milvus_memo.ReadMemo.light``)
LIGHT_FIELDS = ["ct", "is_question"]


def light(hit: dict[str, Any]) -> tuple[int, int, bool]:
    """A search hit (with ``LIGHT_FIELDS``) as the read memo keeps it: uid, ct, question."""
    entity = hit["entity"]
    return int(hit["id"]), int(entity["ct"]), bool(entity["is_question"])


def utterance_schema(dim: int, *, partition_key: bool) -> CollectionSchema:
    from pymilvus import DataType, Function, FunctionType, MilvusClient

    s = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    s.add_field("uid", DataType.INT64, is_primary=True)
    s.add_field("tenant_k", DataType.VARCHAR, max_length=KEY_BYTES, is_partition_key=partition_key)
    s.add_field("user_k", DataType.VARCHAR, max_length=KEY_BYTES)
    s.add_field("conv_k", DataType.VARCHAR, max_length=KEY_BYTES)
    s.add_field("speaker_k", DataType.VARCHAR, max_length=KEY_BYTES)
    s.add_field("role", DataType.VARCHAR, max_length=16)
    s.add_field("started_at", DataType.DOUBLE)
    s.add_field("turn", DataType.INT64)
    s.add_field("ct", DataType.INT64)  # milvus_keys.conv_turn: the conversation and the turn
    s.add_field("is_question", DataType.BOOL)
    for name in ("tenant", "id", "conversation_id", "user_id", "speaker"):
        s.add_field(name, DataType.VARCHAR, max_length=KEY_BYTES)
    s.add_field("started_iso", DataType.VARCHAR, max_length=64)
    s.add_field(
        "text",
        DataType.VARCHAR,
        max_length=TEXT_BYTES,
        enable_analyzer=True,
        analyzer_params=ANALYZER,
    )
    s.add_field(
        "window",
        DataType.VARCHAR,
        max_length=WINDOW_BYTES,
        enable_analyzer=True,
        analyzer_params=ANALYZER,
    )
    s.add_field(
        "speaker_text",
        DataType.VARCHAR,
        max_length=KEY_BYTES,
        enable_analyzer=True,
        analyzer_params=ANALYZER,
    )
    for name in ("text", "window", "speaker_text"):
        s.add_field(f"{name}_sparse", DataType.SPARSE_FLOAT_VECTOR)
        s.add_function(
            Function(
                name=f"bm25_{name}",
                function_type=FunctionType.BM25,
                input_field_names=[name],
                output_field_names=[f"{name}_sparse"],
            )
        )
    s.add_field("dense", DataType.FLOAT_VECTOR, dim=dim)
    return s


def utterance_indexes(client: MilvusClient, *, dense_index: str, nlist: int) -> IndexParams:
    ip = client.prepare_index_params()
    for name in ("text", "window", "speaker_text"):
        ip.add_index(f"{name}_sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    params: dict[str, int] = {}
    if dense_index == "IVF_FLAT":
        params = {"nlist": nlist}
    elif dense_index == "HNSW":  # Milvus Standalone/Distributed; milvus-lite has none
        params = {"M": 16, "efConstruction": 200}
    ip.add_index("dense", index_type=dense_index, metric_type="IP", params=params)
    for name in ("tenant_k", "user_k", "conv_k", "speaker_k", "ct"):
        ip.add_index(name, index_type="INVERTED")
    return ip


def meta_schema() -> CollectionSchema:
    from pymilvus import DataType, MilvusClient

    s = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    s.add_field("key", DataType.VARCHAR, max_length=3 * KEY_BYTES + 8, is_primary=True)
    s.add_field("tenant_k", DataType.VARCHAR, max_length=KEY_BYTES)
    s.add_field("scope", DataType.VARCHAR, max_length=KEY_BYTES + 2)  # "u" + user key, or "t"
    s.add_field("speaker", DataType.VARCHAR, max_length=KEY_BYTES)
    s.add_field("seq", DataType.INT64)
    s.add_field("value", DataType.VARCHAR, max_length=1024)  # the identity row's
    s.add_field("v", DataType.FLOAT_VECTOR, dim=META_DIM)
    return s


def meta_indexes(client: MilvusClient) -> IndexParams:
    ip = client.prepare_index_params()
    ip.add_index("v", index_type="FLAT", metric_type="L2")
    return ip


def speaker_scopes(rec: DocRecord) -> list[str]:
    """The scopes whose speaker list ``rec`` is in: its user's and its tenant's."""
    return ["t", "u" + user_key(rec.user_id)]


def speaker_row(tenant: str, scope: str, speaker: str) -> dict[str, Any]:
    return {
        "key": f"s|{key(tenant)}|{scope}|{key(speaker)}",
        "tenant_k": key(tenant),
        "scope": scope,
        "speaker": speaker,
        "seq": 0,
        "value": "",
        "v": [0.0] * META_DIM,
    }


def cursor_row(seq: int) -> dict[str, Any]:
    return _meta_row("cursor", seq=seq)


def identity_row(identity: str) -> dict[str, Any]:
    return _meta_row("identity", value=identity)


def _meta_row(name: str, *, seq: int = 0, value: str = "") -> dict[str, Any]:
    return {
        "key": name,
        "tenant_k": "",
        "scope": "",
        "speaker": "",
        "seq": seq,
        "value": value,
        "v": [0.0] * META_DIM,
    }


def to_row(rec: DocRecord, vector: npt.NDArray[np.float32], previous: str) -> dict[str, Any]:
    """The collection row of ``rec`` with its window key (``previous`` is the turn before)."""
    window = _fit(previous, WINDOW_BYTES - len(rec.text.encode("utf-8", "surrogatepass")) - 1)
    return {
        "uid": rec.uid,
        "tenant_k": key(rec.tenant),
        "user_k": user_key(rec.user_id),
        "conv_k": key(rec.conversation_id),
        "speaker_k": key(rec.speaker),
        "role": rec.role,
        "started_at": rec.started_at.timestamp(),
        "turn": rec.turn,
        "ct": conv_turn(rec.tenant, rec.conversation_id, rec.turn),
        "is_question": is_question(rec.text),
        "tenant": rec.tenant,
        "id": rec.id,
        "conversation_id": rec.conversation_id,
        "user_id": rec.user_id or "",
        "speaker": rec.speaker,
        "started_iso": rec.started_at.isoformat(),
        "text": rec.text,
        "window": f"{window} {rec.text}" if window else rec.text,
        "speaker_text": rec.speaker,
        "dense": np.asarray(vector, dtype=np.float32).tolist(),
    }


def from_row(row: dict[str, Any]) -> DocRecord:
    return DocRecord(
        uid=int(row["uid"]),
        tenant=str(row["tenant"]),
        id=str(row["id"]),
        conversation_id=str(row["conversation_id"]),
        user_id=str(row["user_id"]) or None,
        turn=int(row["turn"]),
        speaker=str(row["speaker"]),
        role=cast(Role, row["role"]),
        text=str(row["text"]),
        started_at=datetime.fromisoformat(str(row["started_iso"])),
    )


def _fit(text: str, max_bytes: int) -> str:
    """The end of ``text`` that fits in ``max_bytes`` of UTF-8 (the words nearest the turn)."""
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) <= max_bytes:
        return text
    if max_bytes <= 0:
        return ""
    return raw[len(raw) - max_bytes :].decode("utf-8", "ignore")
