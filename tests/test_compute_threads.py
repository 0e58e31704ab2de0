"""`limit_compute_threads`: BLAS limited to what the setting says, OpenMP left alone."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from convmem.settings import Settings

_PROBE = """
import json, os, numpy, threadpoolctl
from convmem.compute_threads import limit_compute_threads
before = {d["user_api"]: d["num_threads"] for d in threadpoolctl.threadpool_info()}
limit_compute_threads(int(os.environ["N"]))
after = [(d["user_api"], d["num_threads"]) for d in threadpoolctl.threadpool_info()]
print(json.dumps({"before": before, "after": after, "env": os.environ.get("OPENBLAS_NUM_THREADS")}))
"""


def _probe(n: int) -> dict[str, Any]:
    import json

    env = {**os.environ, "N": str(n)}
    env.pop("OPENBLAS_NUM_THREADS", None)
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True
    )
    return dict(json.loads(out.stdout))


def test_one_thread_per_blas_call_by_default() -> None:
    assert Settings().index.compute_threads == 1
    got = _probe(1)
    blas = [n for api, n in got["after"] if api == "blas"]
    assert blas and all(n == 1 for n in blas)
    assert got["env"] == "1"  # for a BLAS library loaded later


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 cores to see a default of 2")
def test_zero_leaves_the_library_default() -> None:
    got = _probe(0)
    assert got["env"] is None
    assert dict(got["after"]) == got["before"]
