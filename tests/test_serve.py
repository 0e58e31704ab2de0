"""`convmem serve` as a user runs it: a real process, a real port, demo data, a search."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_answers_a_search_over_the_demo_data(tmp_path: Path, model_cache: Path) -> None:
    port, grpc_port = free_port(), free_port()
    env = {
        **os.environ,
        "CONVMEM_GRPC__PORT": str(grpc_port),
        "CONVMEM_EMBEDDER__CACHE_DIR": str(model_cache),
        "XDG_RUNTIME_DIR": os.environ.get("XDG_RUNTIME_DIR", "/tmp"),
    }
    env.pop("DATABASE_URL", None)  # the embedded default, as `make serve` runs it
    # the server's output goes to a file, not a pipe nobody reads while it starts: a full
    # pipe buffer would block its logging and so its start-up
    log_path = tmp_path / "serve.log"
    log = log_path.open("wb")
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
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        # generous: the first start initialises PostgreSQL and embeds the demo data, minutes
        # on a slow, shared CI machine
        deadline = time.monotonic() + 420
        while True:
            assert proc.poll() is None, log_path.read_text(errors="replace")
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "not ready in time:\n" + log_path.read_text(
                errors="replace"
            )
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
        grpc_round_trip(f"127.0.0.1:{grpc_port}")
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
    # a clean shutdown leaves a snapshot behind, so the next start embeds nothing
    assert (tmp_path / "data" / "index" / "manifest.json").is_file()


def grpc_round_trip(address: str) -> None:
    """Over gRPC: health, ingest, a search with a deadline, the transcript, forget the user."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from query_service.grpc_gen import memory_pb2 as pb
    from query_service.grpc_gen import memory_pb2_grpc as pb_grpc

    with grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + 30
        while True:
            status = health.Check(health_pb2.HealthCheckRequest(service="convmem.v1.Memory"))
            if status.status == health_pb2.HealthCheckResponse.SERVING:
                break
            assert time.monotonic() < deadline, "gRPC health never SERVING"
            time.sleep(0.1)
        stub = pb_grpc.MemoryStub(channel)  # type: ignore[no-untyped-call]  # generated, untyped
        started = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
        turn = pb.Utterance(
            id="g-1",
            conversation_id="g-conv",
            user_id="grpc-user",
            speaker="Lee",
            role=pb.ROLE_USER,
            text="My locker code at the gym is forty two.",
            started_at=started,
        )
        acked = stub.Ingest(pb.IngestRequest(utterances=[turn]), timeout=10)
        assert acked.accepted == 1
        found = stub.Search(
            pb.SearchRequest(
                query="gym locker code",
                min_seq=acked.seq,
                budget_ms=2000,
                filters=pb.Filters(user_id="grpc-user"),
            ),
            timeout=5,
        )
        assert [h.turn.utterance_id for h in found.hits] == ["g-1"]
        transcript = stub.GetTranscript(pb.GetTranscriptRequest(conversation_id="g-conv"))
        assert [t.turn.text for t in transcript.turns] == [turn.text]
        forgot = stub.DeleteUser(pb.DeleteUserRequest(user_id="grpc-user"), timeout=5)
        gone = stub.Search(
            pb.SearchRequest(
                query="gym locker code",
                min_seq=forgot.seq,
                budget_ms=2000,
                filters=pb.Filters(user_id="grpc-user"),
            ),
            timeout=5,
        )
        assert list(gone.hits) == []
