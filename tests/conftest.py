"""Shared fixtures: a real PostgreSQL with pgvector (embedded, or ``DATABASE_URL``)."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pydantic import SecretStr

from convmem.settings import PostgresSettings, Settings
from indexer.embedded_pg import EmbeddedPostgres

TEST_DATA = Path(__file__).parent / "data"


def app_settings(
    database_url: str, tmp_path: Path, keys: dict[str, str] | None = None, **settings: object
) -> Settings:
    """Settings for an app under test: this database, no demo data, these API keys."""
    spec = ",".join(f"{k}:{t}" for k, t in (keys or {}).items())
    return Settings(
        data_dir=tmp_path / "data",
        demo_data=False,
        postgres=PostgresSettings(url=SecretStr(database_url)),
        api_keys=SecretStr(spec) if spec else None,
        **settings,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A running server: ``DATABASE_URL`` if set, else an embedded one for this session."""
    external = os.environ.get("DATABASE_URL")
    if external:
        yield external
        return
    # Not under pytest's basetemp: that is mode 0700, and as root pgserver runs PostgreSQL as
    # an unprivileged user who must be able to traverse to the data dir.
    base = Path(tempfile.mkdtemp(prefix="convmem-test-pg-"))
    pg = EmbeddedPostgres(data_dir=base / "data", cleanup="delete")
    url = pg.start()
    yield url
    pg.stop()
    shutil.rmtree(base, ignore_errors=True)


@contextmanager
def fresh_database(server_url: str, prefix: str = "t") -> Iterator[str]:
    """A new, empty database on the server, dropped afterwards; yields its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
    try:
        yield make_conninfo(server_url, dbname=name)
    finally:
        drop_database(make_conninfo(server_url, dbname=name), missing_ok=True)


def drop_database(database_url: str, *, missing_ok: bool = False) -> None:
    """Drop the database ``database_url`` names, cutting off whoever is connected to it
    (how the tests take the store away from a running service)."""
    name = conninfo_to_dict(database_url)["dbname"]
    exists = "IF EXISTS " if missing_ok else ""
    with psycopg.connect(make_conninfo(database_url, dbname="postgres"), autocommit=True) as c:
        c.execute(f'DROP DATABASE {exists}"{name}" WITH (FORCE)'.encode())


@pytest.fixture
def database_url(server_url: str) -> Iterator[str]:
    """A fresh, empty database for one test (tests commit, so they cannot share one)."""
    with fresh_database(server_url) as url:
        yield url


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ONNX export per test session, shared by every embedder the tests build."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def milvus_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Milvus server: ``MILVUS_URI`` if set, else the pinned wheel's binary, this session."""
    external = os.environ.get("MILVUS_URI")
    if external:
        yield external
        return
    from eval.serve_process import free_port
    from indexer.milvus_server import EmbeddedMilvus

    server = EmbeddedMilvus(tmp_path_factory.mktemp("milvus"), port=free_port()).start()
    yield server.uri
    server.stop()


@pytest.fixture
def milvus_collection() -> str:
    """A collection name no other test uses."""
    return f"t_{uuid.uuid4().hex[:12]}"
