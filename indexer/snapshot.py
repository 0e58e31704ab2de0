"""Index snapshots: the shard's documents and vectors on disk, with the ``seq`` they cover.

Layout of a snapshot directory (plain files, no pickle):

    manifest.json   {"format": 2, "seq": int, "model_id": str, "dim": int, "count": int,
                     "store_id": str | null,
                     "files": {"records.jsonl": {"bytes": int, "sha256": str}, "vectors.npy": ...}}
    records.jsonl   one DocRecord per line, in the order of the vector rows
    vectors.npy     float32 (count, dim); loaded with ``mmap_mode="r"`` when asked

A snapshot is written to a temporary sibling directory, fsynced, and renamed into place, so a
crash mid-write leaves the previous snapshot intact. The manifest is written last and names
each file's size and SHA-256: a snapshot that is torn anyway (a file cut short or changed on
disk, a manifest without its files) fails the check on load and is rebuilt from the store,
never loaded. Loading it means no re-embedding: the tailer then
resumes the change feed from ``seq``. The lexical index is rebuilt from the texts (tantivy
indexes ~100k utterances a second), which keeps the snapshot independent of tantivy's format.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import numpy as np

from indexer.errors import SnapshotError
from indexer.models import Role
from indexer.shard import DocRecord, IndexShard

FORMAT = 2
FILES = ("records.jsonl", "vectors.npy")


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    seq: int
    model_id: str
    dim: int
    count: int


def save_snapshot(
    shard: IndexShard, path: Path, *, model_id: str, dim: int, store_id: str | None = None
) -> SnapshotInfo:
    """Write the shard to ``path`` atomically (replacing any snapshot there).

    ``store_id`` names the store the shard was built from (``PgStore.store_id``).
    """
    seq, records, vectors = shard.export()
    if not records:
        vectors = np.empty((0, dim), dtype=np.float32)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with (tmp / "vectors.npy").open("wb") as fh:
        np.save(fh, np.ascontiguousarray(vectors, dtype=np.float32))
        _sync(fh)
    with (tmp / "records.jsonl").open("w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(_record_to_json(r), ensure_ascii=False) + "\n")
        _sync(fh)
    info = SnapshotInfo(seq=seq, model_id=model_id, dim=dim, count=len(records))
    files = {name: _fingerprint(tmp / name) for name in FILES}
    manifest = {"format": FORMAT, **asdict(info), "store_id": store_id, "files": files}
    with (tmp / "manifest.json").open("w", encoding="utf-8") as fh:
        fh.write(json.dumps(manifest))
        _sync(fh)
    _sync_dir(tmp)
    old = path.with_name(path.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    _sync_dir(path.parent)
    shutil.rmtree(old, ignore_errors=True)
    return info


def _fingerprint(file: Path) -> dict[str, object]:
    with file.open("rb") as fh:
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
    return {"bytes": file.stat().st_size, "sha256": digest}


def _verify(path: Path, manifest: dict[str, object]) -> None:
    """Each file as the manifest recorded it, or SnapshotError (a torn or altered snapshot)."""
    files = manifest.get("files")
    if not isinstance(files, dict) or set(files) != set(FILES):
        raise SnapshotError(f"snapshot manifest at {path} does not list its files")
    for name in FILES:
        want = files[name]
        if not isinstance(want, dict):
            raise SnapshotError(f"snapshot manifest at {path} is malformed")
        try:
            size = (path / name).stat().st_size
        except OSError as exc:
            raise SnapshotError(f"torn snapshot at {path}: {name} is missing") from exc
        if size != want.get("bytes"):
            raise SnapshotError(
                f"torn snapshot at {path}: {name} has {size} bytes, not {want.get('bytes')}"
            )
        if _fingerprint(path / name)["sha256"] != want.get("sha256"):
            raise SnapshotError(f"torn snapshot at {path}: {name} does not match its checksum")


def _sync(fh: IO[Any]) -> None:
    fh.flush()
    os.fsync(fh.fileno())


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_snapshot(
    shard: IndexShard,
    path: Path,
    *,
    model_id: str,
    dim: int,
    mmap: bool = False,
    store_id: str | None = None,
) -> SnapshotInfo:
    """Load a snapshot into an empty shard. Raises SnapshotError if unusable.

    With ``store_id``, a snapshot of another store (another database, or this one before a
    restore) is unusable: its ``seq`` counts another change feed.
    """
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        raise SnapshotError(f"no readable snapshot at {path}: {exc}") from exc
    if not isinstance(manifest, dict):
        raise SnapshotError(f"snapshot manifest at {path} is malformed")
    if manifest.get("format") != FORMAT:
        raise SnapshotError(f"snapshot format {manifest.get('format')} is not {FORMAT}")
    if manifest.get("model_id") != model_id or manifest.get("dim") != dim:
        raise SnapshotError(
            f"snapshot was built with {manifest.get('model_id')} ({manifest.get('dim')}-d),"
            f" not {model_id} ({dim}-d): rebuilding from the store"
        )
    if store_id is not None and manifest.get("store_id") != store_id:
        raise SnapshotError(
            f"snapshot was built from store {manifest.get('store_id')}, not {store_id}"
            " (another database, or a restore since): rebuilding from the store"
        )
    _verify(path, manifest)
    try:
        vectors = np.load(path / "vectors.npy", mmap_mode="r" if mmap else None, allow_pickle=False)
        with (path / "records.jsonl").open(encoding="utf-8") as fh:
            records = [_record_from_json(json.loads(line)) for line in fh]
    except (OSError, ValueError, KeyError) as exc:
        raise SnapshotError(f"corrupt snapshot at {path}: {exc}") from exc
    if vectors.shape != (len(records), dim):
        raise SnapshotError(f"snapshot vectors {vectors.shape} do not match {len(records)} records")
    docs = [r.index_doc(np.asarray(vectors[i], dtype=np.float32)) for i, r in enumerate(records)]
    shard.load(docs, records, int(manifest["seq"]))
    return SnapshotInfo(int(manifest["seq"]), model_id, dim, len(records))


def _record_to_json(r: DocRecord) -> dict[str, object]:
    return {
        "uid": r.uid,
        "tenant": r.tenant,
        "id": r.id,
        "conversation_id": r.conversation_id,
        "user_id": r.user_id,
        "turn": r.turn,
        "speaker": r.speaker,
        "role": r.role.value,
        "text": r.text,
        "started_at": r.started_at.isoformat(),
    }


def _record_from_json(d: dict[str, object]) -> DocRecord:
    return DocRecord(
        uid=int(str(d["uid"])),
        tenant=str(d["tenant"]),
        id=str(d["id"]),
        conversation_id=str(d["conversation_id"]),
        user_id=None if d["user_id"] is None else str(d["user_id"]),
        turn=int(str(d["turn"])),
        speaker=str(d["speaker"]),
        role=Role(str(d["role"])),
        text=str(d["text"]),
        started_at=datetime.fromisoformat(str(d["started_at"])),
    )
