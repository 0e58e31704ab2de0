"""The checked-in gRPC code is what grpcio-tools makes of the proto today (``make proto``)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ("memory_pb2.py", "memory_pb2.pyi", "memory_pb2_grpc.py")


def test_generated_code_is_current(tmp_path: Path) -> None:
    from importlib.resources import files

    from grpc_tools import protoc

    args = [
        "protoc",
        f"-I{files('grpc_tools') / '_proto'}",  # google/protobuf/*.proto
        f"-Iquery_service/grpc_gen={ROOT / 'proto/convmem/v1'}",
        f"--python_out={tmp_path}",
        f"--pyi_out={tmp_path}",
        f"--grpc_python_out={tmp_path}",
        str(ROOT / "proto/convmem/v1/memory.proto"),
    ]
    assert protoc.main(args) == 0
    for name in GENERATED:
        fresh = (tmp_path / "query_service/grpc_gen" / name).read_text()
        kept = (ROOT / "query_service/grpc_gen" / name).read_text()
        if fresh != kept:
            pytest.fail(f"query_service/grpc_gen/{name} is stale: run `make proto`")
