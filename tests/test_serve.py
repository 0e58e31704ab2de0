"""`convmem serve` as a user runs it: a real process, a real port, demo data, a search."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_answers_a_search_over_the_demo_data(tmp_path: Path, model_cache: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "CONVMEM_EMBEDDER__CACHE_DIR": str(model_cache),
        "XDG_RUNTIME_DIR": os.environ.get("XDG_RUNTIME_DIR", "/tmp"),
    }
    env.pop("DATABASE_URL", None)  # the embedded default, as `make serve` runs it
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "convmem",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path / "data"),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "not ready in time"
            time.sleep(0.2)
        r = httpx.post(
            f"{base}/v1/search",
            json={"query": "what am I allergic to", "k": 3, "filters": {"user_id": "maya"}},
            timeout=5,
        )
        assert r.status_code == 200
        hits = r.json()["hits"]
        assert hits and any("allerg" in h["text"].lower() for h in hits[:3])
        assert httpx.get(f"{base}/", timeout=5).text.startswith("<!doctype html>")
        assert httpx.get(f"{base}/openapi.json", timeout=5).json()["info"]["title"] == "convmem"
        out = subprocess.run(
            [sys.executable, "-m", "convmem", "search", "dog's name", "--url", base, "--k", "3"],
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
        )
        assert out.returncode == 0 and " 1. [" in out.stdout
    finally:
        proc.terminate()
        proc.wait(30)
        if proc.stdout is not None:
            proc.stdout.close()
    # a clean shutdown leaves a snapshot behind, so the next start embeds nothing
    assert (tmp_path / "data" / "index" / "manifest.json").is_file()
