"""The real app under uvicorn on a loopback port, for tests that talk to it over sockets."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn
from fastapi import FastAPI


@contextmanager
def serve(app: FastAPI, *, ready_timeout_s: float = 60.0) -> Iterator[str]:
    """Run ``app`` (its lifespan too) under uvicorn in a thread; yield its base URL once
    ``/readyz`` answers 200. The WebSockets are uvicorn's production ones."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", ws="websockets-sansio")
    )
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + ready_timeout_s
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        base = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
        while httpx.get(f"{base}/readyz", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, "the app was not ready in time"
            time.sleep(0.05)
        yield base
    finally:
        server.should_exit = True
        thread.join(30)
