"""Crash safety, short: two ``kill -9`` rounds of ``convmem serve`` under REST and audio ingest.

The full run (20 rounds) is ``python -m eval.crash_check``; see docs/RELIABILITY.md.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from audio_ingest.speech_set import espeak_available
from eval.crash_check import run

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_kill_9_under_ingest_loses_nothing_acknowledged(
    model_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not espeak_available():
        pytest.fail("espeak-ng is missing: `make test` installs it (apt-get install espeak-ng)")
    monkeypatch.setenv("CONVMEM_EMBEDDER__CACHE_DIR", str(model_cache))
    with tempfile.TemporaryDirectory(prefix="convmem-crash-test-") as tmp:
        os.chmod(tmp, 0o755)  # as root, the embedded PostgreSQL runs as another user
        report = run(Path(tmp), rounds=2, writers=1, audio=True, seed=7, kill_window_s=(4.0, 6.0))
    rounds = report["rounds"]
    assert [r["ok"] for r in rounds] == [True, True], rounds
    assert all(r["lost"] == r["resurrected"] == r["diverged"] == 0 for r in rounds)
    # the kills hit a live service: writes were acknowledged over both paths
    assert report["acknowledged_by_source"].get("rest", 0) > 0
    assert report["acknowledged_by_source"].get("audio", 0) > 0
    assert report["deletes_acknowledged"] > 0
    assert all(r["reclaimed_postmaster"] for r in rounds)  # each kill orphaned PostgreSQL
    assert not report["postmaster_left_running"]
