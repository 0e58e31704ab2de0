"""Backup and restore (``indexer.backup``, ``convmem backup`` / ``convmem restore``).

On the real embedded PostgreSQL: the restore target is a second database on the same server
(or, for the CLI's embedded path, a second data dir). What is proved:
- a restored store is the backed-up one, row for row, vectors included, with a new identity;
- it rebuilds the service's index with nothing re-embedded, and nothing deleted before the
  backup comes back (not from the file, not from an index snapshot left on disk);
- a backup taken under concurrent writes is a prefix of the change feed;
- bad input (missing, corrupt or foreign file, a store in the target, no client tools) is a
  one-line error with a non-zero exit, and a failed restore leaves the target as it was.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg
import pytest
from fastapi.testclient import TestClient

from convmem.cli import main
from indexer import backup as bk
from indexer.embedded_pg import EmbeddedPostgres
from indexer.embedders import load_embedder
from indexer.errors import BackupError
from indexer.models import Role, UtteranceIn
from indexer.pg_store import PgStore
from indexer.protocols import Embedder
from tests.conftest import app_settings, fresh_database
from tests.query_service.conftest import CountingEmbedder, app_for, wait_ready
from tests.query_service.helpers import MAYA, TOM, batch
from tests.query_service.test_api import ids, ingest, search

pytestmark = [pytest.mark.integration]

T0 = datetime(2026, 3, 2, 18, 0, tzinfo=UTC)
LEE = [
    ("Lee", "user", "My new bicycle is a green gravel bike called Pickle."),
    ("Agent", "agent", "Pickle the gravel bike, noted."),
]


@pytest.fixture(scope="module")
def tools() -> bk.PgTools:
    return bk.find_pg_tools(os.environ, bundled=bk.bundled_bin_dir())


@pytest.fixture
def other_database(server_url: str) -> Iterator[str]:
    """A second fresh database on the same server: the restore target."""
    with fresh_database(server_url, "r") as url:
        yield url


def utterances(conv: str, user: str, turns: list[tuple[str, str, str]]) -> list[UtteranceIn]:
    return [
        UtteranceIn(
            id=f"{conv}-{i}",
            conversation_id=conv,
            user_id=user,
            speaker=speaker,
            role=Role(role),
            text=text,
            started_at=T0 + timedelta(seconds=20 * i),
        )
        for i, (speaker, role, text) in enumerate(turns)
    ]


def vectors(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 8)).astype(np.float32)


def rows(url: str) -> list[tuple[object, ...]]:
    """Every stored utterance, every column that matters, the vector as text."""
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT uid, tenant, id, conversation_id, turn, speaker, role, text, started_at,"
            " embedding::text, embedding_model, metadata, seq, deleted FROM utterances ORDER BY uid"
        ).fetchall()


def scalar(url: str, sql: str) -> object:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql.encode()).fetchone()
    assert row is not None
    return row[0]


def archive_sql(tools: bk.PgTools, archive: Path) -> str:
    """The archive as SQL (it is compressed on disk)."""
    done = subprocess.run(
        [tools.path("pg_restore"), "-f", "-", str(archive)],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def error_of(err: str) -> str:
    """The one error line the CLI wrote to stderr (after any progress lines), without prefix."""
    lines = err.splitlines()
    errors = [line for line in lines if line.startswith("convmem: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], err
    return errors[0].removeprefix("convmem: error: ")


def seeded_store(url: str) -> None:
    """Maya and Tom, then Tom forgotten: his turns are tombstones."""
    store = PgStore.connect(url)
    try:
        store.upsert_utterances("acme", utterances("maya-1", "maya", MAYA), vectors(6, 1))
        store.upsert_utterances("acme", utterances("tom-1", "tom", TOM), vectors(4, 2))
        store.delete_user("acme", "tom")
    finally:
        store.close()


def test_store_relations_are_every_table_the_migrations_make(database_url: str) -> None:
    PgStore.connect(database_url).close()
    with psycopg.connect(database_url) as conn:
        found = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'S', 'p', 'v', 'm')"
            " AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid"
            " AND d.deptype IN ('e', 'a', 'i'))"  # not an extension's, nor owned by a column
        ).fetchall()
    assert {r[0] for r in found} == {*bk.STORE_TABLES, *bk.STORE_SEQUENCES}


def test_restore_is_the_backup_row_for_row_with_a_new_identity(
    database_url: str, other_database: str, tools: bk.PgTools, tmp_path: Path
) -> None:
    seeded_store(database_url)
    archive = tmp_path / "store.dump"
    info = bk.backup(database_url, archive, tools=tools)
    assert (info.store.utterances, info.store.deleted, info.store.conversations) == (6, 4, 1)
    assert info.size_bytes == archive.stat().st_size > 0
    assert not archive.with_name("store.dump.partial").exists()
    # Tom's words are not in the file: a tombstone is an id with its text and vector wiped.
    sql = archive_sql(tools, archive)
    assert "Maya" in sql and "cello" not in sql and "dentist" not in sql

    restored = bk.restore(other_database, archive, tools=tools)
    assert rows(other_database) == rows(database_url)
    assert restored.store.seq == info.store.seq
    assert restored.restored_from == info.store.store_id
    assert restored.store.store_id not in (None, info.store.store_id)
    assert not restored.replaced
    # the change feed and the uids go on from where they were, never reusing a value
    store = PgStore.connect(other_database)
    try:
        assert store.store_id() == restored.store.store_id
        seq = store.upsert_utterances("acme", utterances("lee-1", "lee", LEE), vectors(2, 3))
        assert seq > info.store.seq
        new = [r for r in rows(other_database) if str(r[2]).startswith("lee-1")]
        assert min(int(str(r[0])) for r in new) > max(int(str(r[0])) for r in rows(database_url))
    finally:
        store.close()


def test_a_backup_under_concurrent_writes_is_a_prefix_of_the_change_feed(
    database_url: str, other_database: str, tools: bk.PgTools, tmp_path: Path
) -> None:
    store = PgStore.connect(database_url)
    stop = threading.Event()
    written: list[int] = []

    def write() -> None:
        i = 0
        while not stop.is_set():
            turns = [("Maya", "user", f"note {i} {j}") for j in range(20)]
            batch_ = utterances(f"c{i}", f"u{i % 5}", turns)
            written.append(store.upsert_utterances("acme", batch_, vectors(20, i)))
            i += 1

    writer = threading.Thread(target=write)
    try:
        store.upsert_utterances("acme", utterances("maya-1", "maya", MAYA), vectors(6, 1))
        writer.start()
        while len(written) < 5:  # writes are under way
            threading.Event().wait(0.01)
        info = bk.backup(database_url, tmp_path / "hot.dump", tools=tools)
        stop.set()
        writer.join()
        for k in range(3):  # and some after it, for sure
            store.upsert_utterances("acme", utterances(f"after{k}", "x", LEE), vectors(2, k))
    finally:
        stop.set()
        writer.join(timeout=30)
        store.close()
    restored = bk.restore(other_database, tmp_path / "hot.dump", tools=tools)
    seq = restored.store.seq
    original = rows(database_url)
    assert seq == info.store.seq  # the summary printed is the file's
    assert 6 < restored.store.utterances < len(original)
    # exactly the rows the feed had reached at the backup's instant: no torn batch, no gap
    assert rows(other_database) == [r for r in original if int(str(r[12])) <= seq]
    assert restored.store.utterances % 20 == 6 % 20


@pytest.fixture
def serve(tmp_path: Path, model_cache: Path) -> Callable[..., AbstractContextManager[TestClient]]:
    """``with serve(url, embedder) as client``: the app on ``url``, ONE data dir for all."""

    @contextmanager
    def make(url: str, embedder: Embedder) -> Iterator[TestClient]:
        cfg = app_settings(url, tmp_path)
        with TestClient(app_for(cfg, embedder)) as client:
            wait_ready(client)
            yield client

    return make


@pytest.mark.slow
def test_a_restored_store_rebuilds_the_index_without_reembedding_or_resurrecting(
    database_url: str,
    other_database: str,
    serve: Callable[..., AbstractContextManager[TestClient]],
    model_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    embedder = load_embedder("static", model_path=None, cache_dir=model_cache)
    with serve(database_url, embedder) as client:
        ingest(client, batch("maya-1", "maya", MAYA))
        ingest(client, batch("tom-1", "tom", TOM))
        assert client.delete("/v1/users/tom").status_code == 200  # forgotten before the backup
    archive = tmp_path / "backup.dump"
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert main(["backup", str(archive)]) == 0
    err = capsys.readouterr().err
    assert "backing up database" in err and "6 utterances (4 deleted, wiped)" in err, err
    assert "KiB in" in err
    with serve(database_url, embedder) as client:
        # after the backup: Lee arrives, and the index snapshot on disk (written as the app
        # stops) covers Lee and a seq the restored feed has not reached
        ingest(client, batch("lee-1", "lee", LEE))
    assert (tmp_path / "data" / "index" / "manifest.json").is_file()

    monkeypatch.setenv("DATABASE_URL", other_database)
    assert main(["restore", str(archive)]) == 0
    err = capsys.readouterr().err
    assert "restored 6 utterances" in err and "new store identity" in err, err

    counting = CountingEmbedder(embedder)
    caplog.set_level(logging.INFO, logger="convmem.wiring")
    with serve(other_database, counting) as client:  # the same data dir: the stale snapshot
        assert "no usable snapshot (snapshot was built from store" in caplog.text
        assert counting.documents == 0  # the vectors came back with the rows
        hits = search(client, "peanut allergy", mode="dense", k=10)
        assert {"maya-1-2", "maya-1-3"} <= set(ids(hits))
        everything = search(client, "dentist cello Thursday bicycle gravel Pickle", k=50)
        assert not [i for i in ids(everything) if i.startswith(("tom-1", "lee-1"))]
        assert client.get("/v1/conversations/tom-1").status_code == 404
        # forgetting after the restore reaches the index too (its feed was not skipped)
        seq = client.delete("/v1/users/maya").json()["seq"]
        assert ids(search(client, "peanut allergy Biscuit Lisbon", seq, k=50)) == []
    assert counting.documents == 0
    caplog.clear()
    with serve(other_database, counting) as client:  # its own snapshot, now, is loaded
        assert "loaded snapshot: 0 docs" in caplog.text
        assert ids(search(client, "peanut allergy Biscuit Lisbon", k=50)) == []


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda p: None, "no such file"),
        (lambda p: p.write_bytes(b"PGDMP" + os.urandom(300)), "not a readable pg_dump"),
        (lambda p: p.write_text("-- SQL, not an archive\n"), "not a readable pg_dump"),
    ],
    ids=["missing", "corrupt", "plain-sql"],
)
def test_a_bad_archive_is_a_one_line_error(
    make: Callable[[Path], object],
    needle: str,
    other_database: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    archive = tmp_path / "in.dump"
    make(archive)
    monkeypatch.setenv("DATABASE_URL", other_database)
    assert main(["restore", str(archive)]) != 0
    assert needle in error_of(capsys.readouterr().err)
    assert scalar(other_database, "SELECT to_regclass('utterances') IS NULL") is True


def test_an_archive_of_another_database_is_refused(
    server_url: str, other_database: str, tools: bk.PgTools, tmp_path: Path
) -> None:
    with psycopg.connect(other_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE notes (id int)")
    foreign = tmp_path / "foreign.dump"
    subprocess.run(
        [tools.path("pg_dump"), "-Fc", "-f", str(foreign), f"--dbname={other_database}"],
        check=True,
    )
    with pytest.raises(BackupError, match="not a convmem backup"):
        bk.check_archive(foreign, tools=tools)
    with pytest.raises(BackupError, match="holds no convmem store"):
        bk.backup(other_database, tmp_path / "x.dump", tools=tools)
    assert not (tmp_path / "x.dump").exists()


def test_a_store_in_the_target_needs_force_and_a_failed_restore_keeps_it(
    database_url: str,
    other_database: str,
    tools: bk.PgTools,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seeded_store(database_url)
    archive = tmp_path / "store.dump"
    bk.backup(database_url, archive, tools=tools)
    target = PgStore.connect(other_database)  # a store with other data
    try:
        target.upsert_utterances("acme", utterances("lee-1", "lee", LEE), vectors(2, 3))
        before_id = target.store_id()
    finally:
        target.close()
    before = rows(other_database)
    monkeypatch.setenv("DATABASE_URL", other_database)

    assert main(["restore", str(archive)]) != 0
    err = error_of(capsys.readouterr().err)
    assert "already holds a convmem store (2 utterances" in err and "--force" in err, err
    assert rows(other_database) == before

    truncated = tmp_path / "truncated.dump"
    truncated.write_bytes(archive.read_bytes()[:-200])  # the end of the utterances' data
    bk.check_archive(truncated, tools=tools)  # its table of contents is whole: found mid-restore
    assert main(["restore", str(truncated), "--force"]) != 0
    err = error_of(capsys.readouterr().err)
    assert err.startswith("restore failed, nothing changed: pg_restore: error: "), err
    assert rows(other_database) == before  # one transaction: the old store is still there
    assert scalar(other_database, "SELECT store_id::text FROM store_identity") == before_id

    assert main(["restore", str(archive), "--force"]) == 0
    assert "(replaced the store there)" in capsys.readouterr().err
    assert rows(other_database) == rows(database_url)
    assert scalar(other_database, "SELECT restored_from::text FROM store_identity") == scalar(
        database_url, "SELECT store_id::text FROM store_identity"
    )


def test_no_client_tools_is_a_one_line_error(
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(bk, "bundled_bin_dir", lambda: None)
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory
    monkeypatch.setenv("DATABASE_URL", database_url)
    for argv in (["backup", str(tmp_path / "x.dump")], ["restore", str(tmp_path / "x.dump")]):
        assert main(argv) != 0
        assert "PostgreSQL client tools not found" in error_of(capsys.readouterr().err)
    with pytest.raises(BackupError, match="not found"):
        bk.find_pg_tools({"PATH": str(tmp_path)}, bundled=None)


def test_backup_into_a_missing_directory_is_an_error(
    database_url: str, tools: bk.PgTools, tmp_path: Path
) -> None:
    PgStore.connect(database_url).close()
    with pytest.raises(BackupError, match="no such directory"):
        bk.backup(database_url, tmp_path / "nope" / "x.dump", tools=tools)


def test_the_cli_backs_up_and_restores_the_embedded_store_of_a_data_dir(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("CONVMEM_POSTGRES__URL", raising=False)
    # not under pytest's basetemp (0700): as root, PostgreSQL runs as another user
    base = Path(tempfile.mkdtemp(prefix="convmem-test-backup-"))
    try:
        source = EmbeddedPostgres(data_dir=base / "a" / "pg")
        seeded_store(source.start())
        source.stop()
        archive = base / "a.dump"
        assert main(["backup", str(archive), "--data-dir", str(base / "a")]) == 0
        assert main(["restore", str(archive), "--data-dir", str(base / "b")]) == 0
        assert "restored 6 utterances (4 deleted, wiped)" in capsys.readouterr().err
        target = EmbeddedPostgres(data_dir=base / "b" / "pg")
        url = target.start()
        try:
            assert scalar(url, "SELECT count(*) FROM utterances WHERE NOT deleted") == 6
        finally:
            target.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)
