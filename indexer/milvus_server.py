"""`EmbeddedMilvus`: the real Milvus core from the pinned ``milvus-lite`` wheel, on a TCP port.

The wheel ships Milvus's C++ server as ``milvus_lite/lib/milvus``. Started with a data file and
``host:port`` it serves the same gRPC API as Milvus Standalone and Distributed, which is what
the tests and the laptop default talk to. This launch is not documented (it is read from the
package's ``server.py``), which is why ``milvus-lite`` is pinned to 2.5.1.

The package itself is never imported (its ``__init__`` imports ``pkg_resources``): only its
directory is looked up.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

_log = logging.getLogger(__name__)

#: how long a start may take before it counts as failed (it takes about 0.1-1.5 s here)
START_TIMEOUT_S = 30.0


class MilvusUnavailable(RuntimeError):
    """The Milvus binary is missing or did not start."""


def milvus_binary() -> Path:
    """The server binary inside the installed ``milvus-lite`` wheel."""
    spec = importlib.util.find_spec("milvus_lite")
    if spec is None or not spec.submodule_search_locations:
        raise MilvusUnavailable(
            "milvus-lite is not installed: pip install 'convmem[milvus]' "
            "(milvus-lite==2.5.1, pymilvus>=2.5,<2.6)"
        )
    binary = Path(next(iter(spec.submodule_search_locations))) / "lib" / "milvus"
    if not binary.exists():
        raise MilvusUnavailable(f"milvus-lite has no server binary at {binary}")
    return binary


class EmbeddedMilvus:
    """One ``milvus`` server process over ``data_dir/milvus.db``, on ``127.0.0.1:port``."""

    def __init__(self, data_dir: Path, *, port: int, log_level: str = "ERROR") -> None:
        self._data_dir = data_dir
        self._port = port
        self._log_level = log_level
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> EmbeddedMilvus:
        """Start the server and wait until it accepts connections; raises MilvusUnavailable."""
        if self._proc is not None:
            return self
        binary = milvus_binary()
        self._data_dir.mkdir(parents=True, exist_ok=True)
        lib = str(binary.parent)
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = lib + (
            ":" + env["LD_LIBRARY_PATH"] if "LD_LIBRARY_PATH" in env else ""
        )
        log = (self._data_dir / "milvus.log").open("ab")
        try:
            self._proc = subprocess.Popen(
                [
                    str(binary),
                    str(self._data_dir / "milvus.db"),
                    f"127.0.0.1:{self._port}",
                    self._log_level,
                ],
                cwd=self._data_dir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C to the service is the service's to pass on
            )
        finally:
            log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                log_path = self._data_dir / "milvus.log"
                raise MilvusUnavailable(
                    f"milvus exited with status {code} at start; see {log_path}"
                )
            if _accepts(self._port):
                _log.info("milvus up on 127.0.0.1:%d (data %s)", self._port, self._data_dir)
                return self
            time.sleep(0.05)
        self.stop()
        raise MilvusUnavailable(
            f"milvus did not listen on port {self._port} in {START_TIMEOUT_S:.0f} s"
        )

    def stop(self, *, kill: bool = False) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s; ``kill``: SIGKILL at once)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def __enter__(self) -> EmbeddedMilvus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False
