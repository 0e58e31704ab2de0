"""convmem_client: typed Python clients for convmem's REST and gRPC APIs.

``Client`` / ``AsyncClient`` speak REST (httpx); ``GrpcClient`` / ``AsyncGrpcClient`` speak
gRPC (grpcio) and are imported on first use (with the ``converse`` stream's types), so the
REST clients never load grpcio. All four return the same frozen dataclasses and raise the
same ``errors``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from convmem_client.async_client import AsyncClient
from convmem_client.client import Client
from convmem_client.errors import (
    ApiError,
    BadRequest,
    Conflict,
    ConvmemError,
    DeadlineExceeded,
    NotFound,
    Overloaded,
    TransportError,
    Unauthorized,
    Unavailable,
)
from convmem_client.models import (
    Hit,
    IngestResult,
    Mode,
    SearchResult,
    Transcript,
    TranscriptTurn,
    Turn,
    Utterance,
    UtteranceInput,
    UtteranceLike,
    WriteResult,
)
from convmem_client.retry import RetryPolicy

if TYPE_CHECKING:
    from convmem_client.async_grpc_client import AsyncGrpcClient
    from convmem_client.converse import (
        ContextEvent,
        ConverseEvent,
        LiveTurn,
        StoredEvent,
        TurnFailed,
    )
    from convmem_client.grpc_client import GrpcClient

__all__ = [
    "ApiError",
    "AsyncClient",
    "AsyncGrpcClient",
    "BadRequest",
    "Client",
    "Conflict",
    "ContextEvent",
    "ConverseEvent",
    "ConvmemError",
    "DeadlineExceeded",
    "GrpcClient",
    "Hit",
    "IngestResult",
    "LiveTurn",
    "Mode",
    "NotFound",
    "Overloaded",
    "RetryPolicy",
    "SearchResult",
    "StoredEvent",
    "Transcript",
    "TranscriptTurn",
    "TransportError",
    "Turn",
    "TurnFailed",
    "Unauthorized",
    "Unavailable",
    "Utterance",
    "UtteranceInput",
    "UtteranceLike",
    "WriteResult",
]

_LAZY = {
    "GrpcClient": "convmem_client.grpc_client",
    "AsyncGrpcClient": "convmem_client.async_grpc_client",
    **dict.fromkeys(
        ("LiveTurn", "ContextEvent", "StoredEvent", "TurnFailed", "ConverseEvent"),
        "convmem_client.converse",
    ),
}


def __getattr__(name: str) -> object:
    """The gRPC clients and stream types, imported when first named (they load grpcio)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'convmem_client' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(module), name)
