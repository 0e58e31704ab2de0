"""PostgreSQL stopped and started under a running ``convmem serve``, then a table locked.

The benchmark's scenario (``python -m eval.store_outage``), shortened: searches never fail
for lack of the store, writes are a 503 problem with ``Retry-After`` while it is down (or a
429 from the ingest limit, also with ``Retry-After``), and writes go through again after it
returns, with nothing acknowledged lost. The bounds on time are generous: the figures are
the benchmark's (docs/RELIABILITY.md).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from eval.outage_load import Plan
from eval.store_outage import measure

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_searches_go_on_writes_are_refused_and_both_recover() -> None:
    plan = Plan(
        baseline_s=2,
        down_s=3,
        after_s=3,
        lock_s=1.5,
        tail_s=2,
        search_rps=20,
        write_rps=4,
        batch=3,
    )
    # not under pytest's basetemp (mode 0700): PostgreSQL runs as another user as root
    data_dir = Path(tempfile.mkdtemp(prefix="convmem-test-outage-"))
    try:
        summary = measure(plan, data_dir=data_dir, corpus=500)["summary"]
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    phases = summary["phases"]

    for name, phase in phases.items():  # not one 5xx or unanswered search, in any phase
        assert phase["searches"]["n"] > 0, name
        for kind in ("plain", "ryw", "ahead"):
            assert phase["searches"][kind]["failed"] == 0, (name, phase["searches"])
    assert summary["targets"]["searches_failed_during_faults"] == 0

    # an index that cannot reach min_seq answers anyway, marked stale; a write that commits
    # as PostgreSQL stops can still make the few searches asked just before it fresh
    ahead = phases["outage"]["searches"]["ahead"]
    late_writes = phases["outage"]["writes"]["statuses"].get("200", 0)
    answered = ahead["n"] - ahead["shed"]
    assert ahead["stale"] == answered if late_writes == 0 else ahead["stale"] >= answered - 3

    # a write sent as PostgreSQL stops, or in the second before it is back, may still be
    # stored (200); the rest are refused, every one with a Retry-After, as a problem
    down = phases["outage"]["writes"]
    refused = sum(down["statuses"].values()) - down["statuses"].get("200", 0)
    assert down["statuses"].get("503", 0) >= 1, down
    assert {s.split()[0] for s in down["statuses"]} <= {"200", "503", "429"}, down
    assert down["refused_with_retry_after"] == refused
    assert down["refused_as_problem_json"] == refused

    recovery = summary["recovery"]
    assert recovery["first_write_ok_s"] is not None and recovery["first_write_ok_s"] < 60
    assert recovery["readyz_ok_s"] is not None and recovery["readyz_ok_s"] < 60
    assert phases["recovered"]["writes"]["statuses"].get("200", 0) >= 1
    assert phases["after_lock"]["writes"]["statuses"].get("200", 0) >= 1
    assert {s.split()[0] for s in phases["lock"]["writes"]["statuses"]} <= {"200", "503", "429"}

    stored = summary["durability"]
    assert stored["acked"] > 0
    assert stored["missing"] == 0
