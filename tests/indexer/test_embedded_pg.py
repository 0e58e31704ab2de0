"""The embedded PostgreSQL: a server orphaned by ``kill -9`` is reclaimed, not leaked."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

from indexer.embedded_pg import HANDLE_FILE, EmbeddedPostgres, drop_dead_owners

pytestmark = [pytest.mark.integration]

OWNER = """
import sys, time
from pathlib import Path
from indexer.embedded_pg import EmbeddedPostgres
print(EmbeddedPostgres(data_dir=Path(sys.argv[1])).start(), flush=True)
time.sleep(600)
"""


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_dead_owners_are_dropped_and_live_ones_kept(tmp_path: Path) -> None:
    handles = tmp_path / HANDLE_FILE
    gone = dead_pid()
    handles.write_text(json.dumps([os.getpid(), gone]))
    assert drop_dead_owners(handles) == [gone]
    assert json.loads(handles.read_text()) == [os.getpid()]
    assert drop_dead_owners(handles) == []  # nothing more to drop
    assert drop_dead_owners(tmp_path / "missing.json") == []


def postmaster_pid(pgdata: Path) -> int:
    return int((pgdata / "postmaster.pid").read_text().splitlines()[0])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_server_left_by_a_killed_owner_is_reclaimed_and_stopped_on_exit() -> None:
    # not under pytest's 0700 basetemp: as root, PostgreSQL runs as another user
    base = Path(tempfile.mkdtemp(prefix="convmem-orphan-"))
    data = base / "pg"
    env = {**os.environ, "XDG_RUNTIME_DIR": os.environ.get("XDG_RUNTIME_DIR", "/tmp")}
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(data)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert owner.stdout is not None
        assert owner.stdout.readline().startswith("postgresql://")
        postmaster = postmaster_pid(data)
        owner.send_signal(signal.SIGKILL)
        owner.wait(30)
        assert alive(postmaster)  # orphaned: nobody left to stop it

        pg = EmbeddedPostgres(data_dir=data)
        url = pg.start()
        assert pg.reclaimed_from == [owner.pid]
        assert postmaster_pid(data) == postmaster  # the running server is reused
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        pg.stop()  # this process is now its only owner: it stops the server
        deadline = time.monotonic() + 30
        while alive(postmaster):
            assert time.monotonic() < deadline, "the reclaimed server was not stopped"
            time.sleep(0.1)
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait(30)
        if owner.stdout is not None:
            owner.stdout.close()
        shutil.rmtree(base, ignore_errors=True)
