"""The store adapter when PostgreSQL goes away or a lock is held: bounded waits, quick return.

Each outage test stops a PostgreSQL of its own (``eval.pg_control``), never the session's.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psycopg
import pytest

from eval.pg_control import PgControl
from indexer.embedded_pg import EmbeddedPostgres
from indexer.errors import StoreError
from indexer.models import Role, UtteranceIn
from indexer.pg_store import PgStore

pytestmark = pytest.mark.integration


def utt(i: int) -> UtteranceIn:
    return UtteranceIn(
        id=f"f-{i}",
        conversation_id="faults",
        speaker="Maya",
        role=Role.USER,
        text=f"fault test utterance {i}",
        started_at=datetime(2026, 5, 1, 9, 0, i, tzinfo=UTC),
        user_id="maya",
    )


def vec() -> np.ndarray:
    return np.full((1, 8), 1 / np.sqrt(8), dtype=np.float32)


@pytest.fixture
def own_pg() -> Iterator[tuple[str, PgControl]]:
    """A PostgreSQL for this test alone, which it may stop and start."""
    base = Path(tempfile.mkdtemp(prefix="convmem-test-faults-"))
    pg = EmbeddedPostgres(data_dir=base / "pg", cleanup="delete")
    url = pg.start()
    control = PgControl(pgdata=base / "pg")
    try:
        yield url, control
    finally:
        if control.running():  # pgserver stops only the postmaster it started itself
            control.stop()
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_calls_fail_fast_while_postgres_is_down_and_work_within_seconds_of_its_return(
    own_pg: tuple[str, PgControl],
) -> None:
    url, control = own_pg
    store = PgStore.connect(url, max_size=2)
    try:
        store.upsert_utterances("t", [utt(0)], vec())
        control.stop()
        # eight seconds of calls, as the change feed and the writers make them; before the
        # fix each waited the pool's 10 s for a connection, and psycopg_pool's back-off grew
        # to 8 s meanwhile (attempts 1, 3, 7, 15 s after the first failure)
        slowest, until = 0.0, time.monotonic() + 8
        while time.monotonic() < until:
            t = time.monotonic()
            with pytest.raises(StoreError):
                store.upsert_utterances("t", [utt(1)], vec())
            slowest = max(slowest, time.monotonic() - t)
            time.sleep(0.2)
        assert slowest < 3.0
        control.start()
        back = time.monotonic()
        while True:
            with contextlib.suppress(StoreError):
                store.upsert_utterances("t", [utt(2)], vec())
                break
            assert time.monotonic() - back < 30, "the store never came back"
            time.sleep(0.05)
        assert time.monotonic() - back < 4.0  # was about 7 s after this outage
        assert [u.id for u in store.transcript("t", "faults")] == ["f-0", "f-2"]
    finally:
        store.close()


def test_a_write_behind_a_held_lock_fails_after_the_lock_timeout_instead_of_hanging(
    database_url: str,
) -> None:
    store = PgStore.connect(database_url, lock_timeout_s=0.5)
    try:
        store.upsert_utterances("t", [utt(0)], vec())
        outcome: list[tuple[str, float]] = []

        def write() -> None:
            t = time.monotonic()
            try:
                store.upsert_utterances("t", [utt(1)], vec())
                outcome.append(("stored", time.monotonic() - t))
            except StoreError as exc:
                outcome.append((str(exc), time.monotonic() - t))

        with psycopg.connect(database_url) as locker:  # the lock lasts until the rollback
            locker.execute("LOCK TABLE utterances IN ACCESS EXCLUSIVE MODE")
            writer = threading.Thread(target=write, daemon=True)
            writer.start()
            writer.join(8)  # without a lock timeout the write waits here for the rollback
            locker.rollback()
        writer.join(10)
        (what, took), *_ = outcome
        assert "lock timeout" in what
        assert took < 4.0
        store.upsert_utterances("t", [utt(2)], vec())  # the lock gone, writes go through
        assert [u.id for u in store.transcript("t", "faults")] == ["f-0", "f-2"]
    finally:
        store.close()
