"""Index snapshots: the shard's records, vectors and lexical index on disk, with the ``seq``.

Layout of a snapshot directory (plain files, no pickle):

    manifest.json       {"format": 3, "seq": int, "model_id": str, "dim": int, "count": int,
                         "store_id": str | null, "lexical": bool,
                         "files": {relative path: {"bytes": int, "sha256": str}, ...}}
    vectors.npy         float32 (count, dim), rows grouped by (tenant, user)
    records/<col>.npy   one column per record field (``indexer.record_table.NUMERIC``), and
                        ``<id|text>.bytes.npy`` + ``<id|text>.offsets.npy``: UTF-8 bytes and
                        row offsets; rows aligned with the vectors
    records/strings.json  the dictionaries the code columns index (tenants, users, ...)
    lexical/            the tantivy index's committed segment files and ``meta.json``, hard-
                        linked from the live index under the shard's lock (so they hold the
                        same ``seq``), and the analyzer they were built with

A snapshot is written to a temporary sibling directory, fsynced, and renamed into place, so a
crash mid-write leaves the previous snapshot intact. The manifest is written last and names
each file's size and SHA-256: a snapshot that is torn anyway (a file cut short or changed on
disk, a manifest without its files) fails the check on load and is rebuilt from the store,
never loaded; so does one of another format. Loading it means no re-embedding and no
re-indexing: the lexical index opens the saved segments, the vectors become the partitions
as they are, and the tailer then resumes the change feed from ``seq``. A lexical index that
keeps no files (not a ``PersistentLexicalIndex``) is rebuilt from the texts instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from indexer.errors import SnapshotError
from indexer.record_table import BLOBS, NUMERIC, RecordColumns
from indexer.shard import IndexShard

FORMAT = 3
VECTORS = "vectors.npy"
RECORDS = "records"
LEXICAL = "lexical"
STRINGS = f"{RECORDS}/strings.json"
#: every snapshot has these files (the lexical ones vary with the index)
REQUIRED = (
    VECTORS,
    STRINGS,
    *(f"{RECORDS}/{name}.npy" for name in NUMERIC),
    *(f"{RECORDS}/{name}.{part}.npy" for name in BLOBS for part in ("bytes", "offsets")),
)
_HASH_THREADS = 2


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
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / RECORDS).mkdir(parents=True)
    export = shard.export(lexical_dir=tmp / LEXICAL)
    vectors = export.vectors if len(export.records) else np.empty((0, dim), dtype=np.float32)
    _save_npy(tmp / VECTORS, np.ascontiguousarray(vectors, dtype=np.float32))
    _save_records(tmp, export.records)
    for file in sorted((tmp / LEXICAL).iterdir()) if export.lexical_saved else ():
        with file.open("rb+") as fh:
            os.fsync(fh.fileno())
    if export.lexical_saved:
        _sync_dir(tmp / LEXICAL)
    _sync_dir(tmp / RECORDS)
    info = SnapshotInfo(seq=export.seq, model_id=model_id, dim=dim, count=len(export.records))
    names = [*REQUIRED]
    if export.lexical_saved:
        names += [f"{LEXICAL}/{f.name}" for f in sorted((tmp / LEXICAL).iterdir())]
    files = _fingerprints(tmp, names)
    manifest = {
        "format": FORMAT,
        **asdict(info),
        "store_id": store_id,
        "lexical": export.lexical_saved,
        "files": files,
    }
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


def _save_npy(file: Path, array: npt.NDArray[Any]) -> None:
    with file.open("wb") as fh:
        np.save(fh, array, allow_pickle=False)
        _sync(fh)


def _save_records(tmp: Path, cols: RecordColumns) -> None:
    for name in NUMERIC:
        _save_npy(tmp / RECORDS / f"{name}.npy", cols.numeric[name])
    for name in BLOBS:
        data, offsets = cols.blobs[name]
        _save_npy(tmp / RECORDS / f"{name}.bytes.npy", data)
        _save_npy(tmp / RECORDS / f"{name}.offsets.npy", offsets)
    strings = {
        "tenants": cols.tenants,
        "users": cols.users,
        "convs": cols.convs,
        "speakers": cols.speakers,
    }
    with (tmp / STRINGS).open("w", encoding="utf-8") as fh:
        fh.write(json.dumps(strings, ensure_ascii=False))
        _sync(fh)


def _load_records(path: Path) -> RecordColumns:
    def load(name: str) -> npt.NDArray[Any]:
        array: npt.NDArray[Any] = np.load(path / RECORDS / name, allow_pickle=False)
        return array

    strings = json.loads((path / STRINGS).read_text(encoding="utf-8"))
    return RecordColumns(
        numeric={name: load(f"{name}.npy") for name in NUMERIC},
        blobs={name: (load(f"{name}.bytes.npy"), load(f"{name}.offsets.npy")) for name in BLOBS},
        tenants=[str(t) for t in strings["tenants"]],
        users=[None if u is None else str(u) for u in strings["users"]],
        convs=[(int(t), str(c)) for t, c in strings["convs"]],
        speakers=[str(s) for s in strings["speakers"]],
    )


def _fingerprint(file: Path) -> dict[str, object]:
    with file.open("rb") as fh:
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
    return {"bytes": file.stat().st_size, "sha256": digest}


def _fingerprints(root: Path, names: list[str]) -> dict[str, dict[str, object]]:
    """Each file's size and SHA-256 (hashed on threads: hashlib lets go of the GIL)."""
    with ThreadPoolExecutor(_HASH_THREADS) as pool:
        prints = list(pool.map(lambda name: _fingerprint(root / name), names))
    return dict(zip(names, prints, strict=True))


def _verify(path: Path, manifest: dict[str, object]) -> None:
    """Each file as the manifest recorded it, or SnapshotError (a torn or altered snapshot)."""
    files = manifest.get("files")
    if not isinstance(files, dict) or not set(REQUIRED) <= set(files):
        raise SnapshotError(f"snapshot manifest at {path} does not list its files")
    for name, want in files.items():
        if not isinstance(want, dict) or ".." in Path(name).parts:
            raise SnapshotError(f"snapshot manifest at {path} is malformed")
        try:
            size = (path / name).stat().st_size
        except OSError as exc:
            raise SnapshotError(f"torn snapshot at {path}: {name} is missing") from exc
        if size != want.get("bytes"):
            raise SnapshotError(
                f"torn snapshot at {path}: {name} has {size} bytes, not {want.get('bytes')}"
            )
    try:
        found = _fingerprints(path, list(files))
    except OSError as exc:
        raise SnapshotError(f"torn snapshot at {path}: {exc}") from exc
    for name, want in files.items():
        if found[name]["sha256"] != want.get("sha256"):
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
    restore) is unusable: its ``seq`` counts another change feed. With ``mmap`` the vectors
    stay in the page cache, memory-mapped read-only, rather than being read in.
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
        vectors = np.load(path / VECTORS, mmap_mode="r" if mmap else None, allow_pickle=False)
        records = _load_records(path)
        if vectors.shape != (len(records), dim) or vectors.dtype != np.float32:
            raise ValueError(f"vectors {vectors.shape} do not match {len(records)} records")
        if len(records) != manifest.get("count"):
            raise ValueError(f"{len(records)} records, the manifest says {manifest.get('count')}")
        lexical = path / LEXICAL if manifest.get("lexical") is True else None
        shard.restore(records, vectors, int(manifest["seq"]), lexical_dir=lexical)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SnapshotError(f"corrupt snapshot at {path}: {exc}") from exc
    return SnapshotInfo(int(manifest["seq"]), model_id, dim, len(records))
