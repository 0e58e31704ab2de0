"""``convmem serve`` as a child process, for the harnesses that measure it from outside."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def start_serve(
    env: Mapping[str, str], *, log: Path, unset: Iterable[str] = ()
) -> subprocess.Popen[bytes]:
    """Start ``convmem serve`` with this process's environment, less ``unset``, plus ``env``;
    its output goes to ``log``."""
    child = dict(os.environ)
    for name in unset:
        child.pop(name, None)
    child.update(env)
    with log.open("wb") as out:  # the child keeps its own copy
        return subprocess.Popen(
            [sys.executable, "-m", "convmem", "serve"], env=child, stdout=out, stderr=out
        )


def wait_ready(
    base_url: str, proc: subprocess.Popen[bytes], *, log: Path, timeout_s: float = 300
) -> None:
    """Until ``/readyz`` answers 200; RuntimeError if the server exits or takes too long."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}; see {log}")
        try:
            if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the server was not ready in {timeout_s:.0f} s; see {log}")
