"""``convmem_client.__all__`` is the public API, and the REST clients need no server code."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import convmem_client

LAZY = {"GrpcClient", "AsyncGrpcClient", "LiveTurn", "ContextEvent", "StoredEvent"}
LAZY |= {"TurnFailed", "ConverseEvent"}


def test_all_lists_every_public_member() -> None:
    public = {
        name
        for name, value in vars(convmem_client).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    } - {"annotations", "TYPE_CHECKING"}
    assert set(convmem_client.__all__) == public | LAZY
    assert len(convmem_client.__all__) == len(set(convmem_client.__all__))
    for name in convmem_client.__all__:  # the lazy ones too
        assert getattr(convmem_client, name) is not None


def test_all_holds_the_client_api() -> None:
    for name in ("Client", "AsyncClient", "GrpcClient", "AsyncGrpcClient", "RetryPolicy"):
        assert name in convmem_client.__all__
    for name in ("SearchResult", "Hit", "IngestResult", "Transcript", "WriteResult"):
        assert name in convmem_client.__all__
    for name in ("ApiError", "NotFound", "Overloaded", "TransportError"):
        assert name in convmem_client.__all__


def test_an_unknown_name_is_an_attribute_error() -> None:
    try:
        convmem_client.Nope  # noqa: B018 - the lookup is the test
    except AttributeError as exc:
        assert "Nope" in str(exc)
    else:
        raise AssertionError("no AttributeError")


def test_the_rest_clients_load_neither_grpc_nor_the_server() -> None:
    probe = (
        "import sys, convmem_client\n"
        "from convmem_client import Client, AsyncClient, Utterance, RetryPolicy\n"
        "heavy = {'grpc', 'google', 'query_service', 'indexer', 'fastapi', 'psycopg', 'numpy'}\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
        check=True,
    )
    assert out.stdout.strip() == "[]"
