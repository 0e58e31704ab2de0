"""What the benchmark entry points share: percentiles, the machine, and writing a report."""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def percentiles(xs: Sequence[float], *, digits: int = 3) -> dict[str, float]:
    """p50, p95, p99, mean and max of ``xs`` (non-empty), rounded, with ``n``."""
    a = np.asarray(xs, dtype=np.float64)
    out = {f"p{p}": round(float(np.percentile(a, p)), digits) for p in (50, 95, 99)}
    return out | {
        "mean": round(float(a.mean()), digits),
        "max": round(float(a.max()), digits),
        "n": len(xs),
    }


def machine() -> dict[str, object]:
    return {"cpus": len(os.sched_getaffinity(0)), "platform": platform.platform()}


def write_report(
    out: Path, stem: str, report: dict[str, Any], render: Callable[[dict[str, Any]], str]
) -> None:
    """``out/stem.json`` and ``out/stem.md``, and the markdown on stdout."""
    out.mkdir(parents=True, exist_ok=True)
    text = render(report)
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2))
    (out / f"{stem}.md").write_text(text)
    sys.stdout.write(text)
