"""The gRPC API's messages (``convmem.v1``), shared by ``GrpcClient`` and ``AsyncGrpcClient``:
typed arguments become request messages, responses the same dataclasses as over REST
(``_grpc_answers``), and status codes the same ``ApiError``s. No I/O here."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

import grpc
from grpc_health.v1 import health_pb2

from convmem_client import _grpc_answers as answers
from convmem_client.errors import (
    BadRequest,
    ConvmemError,
    Overloaded,
    TransportError,
    Unavailable,
    error_for,
)
from convmem_client.models import (
    IngestResult,
    Mode,
    SearchResult,
    Transcript,
    UtteranceInput,
    WriteResult,
)
from query_service.grpc_gen import memory_pb2 as pb

T = TypeVar("T")
SERVICE = "convmem.v1.Memory"
DEFAULT_TARGET = "127.0.0.1:50051"
RETRY_AFTER_KEY = "retry-after-ms"

_ROLES = {"user": pb.ROLE_USER, "agent": pb.ROLE_AGENT, "other": pb.ROLE_OTHER}
_SOURCES = {"text": pb.SOURCE_TEXT, "asr": pb.SOURCE_ASR}
_MODES = {"hybrid": pb.MODE_HYBRID, "lexical": pb.MODE_LEXICAL, "dense": pb.MODE_DENSE}


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    #: the stub's attribute (``Search``, ``Ingest``, ...)
    method: str
    #: the method's request message
    request: object
    #: reads the method's response message (its type is the method's)
    decode: Callable[[Any], T]
    idempotent: bool = True


def retryable(error: ConvmemError) -> bool:
    """RESOURCE_EXHAUSTED, UNAVAILABLE and no connection. Not DEADLINE_EXCEEDED: over gRPC the
    deadline is the caller's, and a retry could not finish within it."""
    return isinstance(error, Overloaded | Unavailable | TransportError)


def _bad(detail: str) -> BadRequest:
    return BadRequest(400, "INVALID_ARGUMENT", detail)


def _enum(table: Mapping[str, T], value: str, what: str) -> T:
    try:
        return table[str(value)]
    except KeyError:
        raise _bad(f"{what} must be one of {', '.join(table)}, got {value!r}") from None


def aware(value: object) -> datetime | None:
    if value is None:
        return None
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    if not isinstance(when, datetime):
        raise _bad(f"expected a time, got {value!r}")
    if when.tzinfo is None:
        raise _bad(f"a time needs a time zone, got {when.isoformat()}")
    return when


def role(value: str) -> pb.Role:
    return _enum(_ROLES, value, "role")


def utterance(u: UtteranceInput) -> pb.Utterance:
    if isinstance(u, Mapping):
        get = u.get
    else:

        def get(name: str, default: object = None) -> object:
            return getattr(u, name, default)

    msg = pb.Utterance(
        id=str(get("id", "")),
        conversation_id=str(get("conversation_id", "")),
        speaker=str(get("speaker", "")),
        role=_enum(_ROLES, str(get("role", "")), "role"),
        text=str(get("text", "")),
        user_id=str(get("user_id") or ""),
        agent_id=str(get("agent_id") or ""),
        source=_enum(_SOURCES, str(get("source") or "text"), "source"),
        metadata={str(k): str(v) for k, v in dict(get("metadata") or {}).items()},  # type: ignore[call-overload]  # a mapping of str
    )
    for name in ("started_at", "ended_at"):
        when = aware(get(name))
        if when is not None:
            getattr(msg, name).FromDatetime(when)
    confidence = get("asr_confidence")
    if confidence is not None:
        msg.asr_confidence = float(confidence)  # type: ignore[arg-type]  # a number
    return msg


def ingest(utterances: Iterable[UtteranceInput]) -> Call[IngestResult]:
    """Idempotent by utterance id: a retry stores nothing twice."""
    request = pb.IngestRequest(utterances=[utterance(u) for u in utterances])
    return Call("Ingest", request, answers.ingest_result)


def _many(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def search(
    query: str,
    *,
    k: int,
    mode: Mode,
    user_id: str | None,
    conversation_id: str | Sequence[str] | None,
    speaker: str | Sequence[str] | None,
    role: str | Sequence[str] | None,
    since: datetime | None,
    until: datetime | None,
    budget_ms: float | None,
    min_seq: int | None,
    reference_time: datetime | None,
) -> Call[SearchResult]:
    filters = pb.Filters(
        user_id=user_id or "",
        conversation_ids=_many(conversation_id),
        speakers=_many(speaker),
        roles=[_enum(_ROLES, r, "role") for r in _many(role)],
    )
    for name, when in (("since", since), ("until", until)):
        checked = aware(when)
        if checked is not None:
            getattr(filters, name).FromDatetime(checked)
    request = pb.SearchRequest(
        query=query,
        k=k,
        mode=_enum(_MODES, mode, "mode"),
        filters=filters,
        budget_ms=budget_ms or 0.0,
    )
    if min_seq is not None:
        request.min_seq = min_seq
    checked = aware(reference_time)
    if checked is not None:
        request.reference_time.FromDatetime(checked)
    return Call("Search", request, answers.search_result)


def put_conversation(
    conversation_id: str,
    *,
    user_id: str | None,
    agent_id: str | None,
    started_at: datetime | None,
    metadata: Mapping[str, str] | None,
    idempotent: bool,
) -> Call[WriteResult]:
    request = pb.PutConversationRequest(
        conversation_id=conversation_id,
        user_id=user_id or "",
        agent_id=agent_id or "",
        metadata=dict(metadata or {}),
    )
    checked = aware(started_at)
    if checked is not None:
        request.started_at.FromDatetime(checked)
    return Call("PutConversation", request, answers.write_result, idempotent=idempotent)


def get_transcript(conversation_id: str) -> Call[Transcript]:
    request = pb.GetTranscriptRequest(conversation_id=conversation_id)
    return Call("GetTranscript", request, answers.transcript)


def delete_conversation(conversation_id: str) -> Call[WriteResult]:
    request = pb.DeleteConversationRequest(conversation_id=conversation_id)
    return Call("DeleteConversation", request, answers.write_result)


def delete_utterance(utterance_id: str) -> Call[WriteResult]:
    request = pb.DeleteUtteranceRequest(utterance_id=utterance_id)
    return Call("DeleteUtterance", request, answers.write_result)


def delete_user(user_id: str) -> Call[WriteResult]:
    return Call("DeleteUser", pb.DeleteUserRequest(user_id=user_id), answers.write_result)


def health_request() -> object:
    return health_pb2.HealthCheckRequest(service=SERVICE)


def serving(response: Any) -> bool:
    return bool(response.status == health_pb2.HealthCheckResponse.SERVING)


# -- errors ----------------------------------------------------------------------------------
_HTTP_OF = {
    "INVALID_ARGUMENT": 400,
    "OUT_OF_RANGE": 400,
    "FAILED_PRECONDITION": 409,
    "ALREADY_EXISTS": 409,
    "ABORTED": 409,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "RESOURCE_EXHAUSTED": 429,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
    "UNIMPLEMENTED": 501,
}
#: how gRPC core words an UNAVAILABLE that no server sent: nothing listens, or it went away
_NO_CONNECTION = ("failed to connect", "connection refused", "socket closed", "connection reset")


def error_of(exc: grpc.RpcError, target: str) -> ConvmemError:
    """The error for a failed call (``grpc.RpcError`` or ``grpc.aio.AioRpcError``)."""
    code = exc.code()
    name = getattr(code, "name", str(code))
    detail = str(exc.details() or name)
    if name == "UNAVAILABLE" and any(s in detail.lower() for s in _NO_CONNECTION):
        return TransportError(f"{target}: {detail}")
    retry_after_s = None
    if name == "RESOURCE_EXHAUSTED":
        retry_after_s = _retry_after_s(exc.trailing_metadata())
    return error_for(_HTTP_OF.get(name, 500), name, detail, retry_after_s=retry_after_s)


def _retry_after_s(metadata: object) -> float | None:
    for key, value in metadata or ():  # type: ignore[attr-defined]  # pairs of str
        if str(key).lower() == RETRY_AFTER_KEY:
            try:
                return max(0.0, float(value) / 1000)
            except ValueError:
                return None
    return None


def metadata_for(api_key: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {api_key}"),) if api_key else ()
