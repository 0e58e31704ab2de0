"""Versioned schema migrations: numbered SQL files in ``indexer/migrations``, applied in order.

All pending files run in one transaction, each with its row in ``schema_migrations``, under an
advisory lock, so concurrent starters (several replicas) apply each migration exactly once.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

import psycopg

from indexer.errors import StoreError

_log = logging.getLogger(__name__)
_MIGRATION_LOCK = 0x636D6D6967  # "cmmig"
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def bundled_migrations() -> list[Migration]:
    """The migrations shipped in this package, ordered by version."""
    found: list[Migration] = []
    for entry in resources.files("indexer.migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name, entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise StoreError(f"duplicate migration versions in {versions}")
    return found


def migrate(conn: psycopg.Connection[tuple[object, ...]]) -> list[int]:
    """Apply every pending migration; return the versions applied now."""
    applied_now: list[int] = []
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            rows = conn.execute("SELECT version FROM schema_migrations").fetchall()
            done = {int(str(r[0])) for r in rows}
            for migration in bundled_migrations():
                if migration.version in done:
                    continue
                _log.info("applying migration %s", migration.name)
                conn.execute(migration.sql.encode())
                conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                    (migration.version, migration.name),
                )
                applied_now.append(migration.version)
    except psycopg.Error as exc:
        raise StoreError(f"schema migration failed: {exc}") from exc
    return applied_now
