"""The REST API's wire format, shared by ``Client`` and ``AsyncClient``: each method becomes a
``Call`` (what to send, whether a retry is safe, how to read the answer: ``_rest_answers``),
and problems (RFC 9457) become ``ApiError``s. No I/O here."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar
from urllib.parse import quote

import httpx

from convmem_client import _rest_answers as answers
from convmem_client.errors import (
    ApiError,
    ConvmemError,
    DeadlineExceeded,
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

T = TypeVar("T")
DEFAULT_URL = "http://127.0.0.1:8080"
Json = Mapping[str, object]


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    method: str
    path: str
    decode: Callable[[Json], T]
    body: Json | None = None
    #: safe to send twice (a retry after a timeout or a 429 changes nothing more)
    idempotent: bool = True


def headers_for(api_key: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {api_key}"} if api_key else {}


def retryable(error: ConvmemError) -> bool:
    """Shed (429), not ready or a bad gateway (502, 503), a gateway timeout (504), no answer."""
    return isinstance(error, Overloaded | Unavailable | DeadlineExceeded | TransportError)


def _segment(value: str) -> str:
    if not value:
        raise ValueError("an id must not be empty")
    return quote(value, safe="")


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _jsonable(value: object) -> object:
    return value.isoformat() if isinstance(value, datetime) else value


def utterance_json(u: UtteranceInput) -> dict[str, object]:
    if isinstance(u, Mapping):
        return {str(k): _jsonable(v) for k, v in u.items()}
    body: dict[str, object] = {
        "id": u.id,
        "conversation_id": u.conversation_id,
        "speaker": u.speaker,
        "role": str(u.role),
        "text": u.text,
        "started_at": u.started_at.isoformat(),
        "source": str(u.source),
        "metadata": dict(u.metadata),
    }
    optional = {
        "ended_at": _iso(u.ended_at),
        "user_id": u.user_id,
        "agent_id": u.agent_id,
        "asr_confidence": u.asr_confidence,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    return body


def ingest(utterances: Iterable[UtteranceInput]) -> Call[IngestResult]:
    """Idempotent by utterance id: a retry stores nothing twice."""
    body = {"utterances": [utterance_json(u) for u in utterances]}
    return Call("POST", "/v1/utterances", answers.ingest_result, body)


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
    filters: dict[str, object] = {}
    for name, value in (
        ("user_id", user_id),
        ("conversation_id", conversation_id),
        ("speaker", speaker),
        ("role", role),
    ):
        if value is not None:
            filters[name] = value if isinstance(value, str) else list(value)
    for name, when in (("since", since), ("until", until)):
        if when is not None:
            filters[name] = when.isoformat()
    body: dict[str, object] = {"query": query, "k": k, "mode": mode, "filters": filters}
    if budget_ms is not None:
        body["budget_ms"] = budget_ms
    if min_seq is not None:
        body["min_seq"] = min_seq
    if reference_time is not None:
        body["reference_time"] = reference_time.isoformat()
    return Call("POST", "/v1/search", answers.search_result, body)


def put_conversation(
    conversation_id: str,
    *,
    user_id: str | None,
    agent_id: str | None,
    started_at: datetime | None,
    metadata: Mapping[str, str] | None,
    idempotent: bool,
) -> Call[WriteResult]:
    body: dict[str, object] = {"metadata": dict(metadata or {})}
    for name, value in (("user_id", user_id), ("agent_id", agent_id)):
        if value is not None:
            body[name] = value
    if started_at is not None:
        body["started_at"] = started_at.isoformat()
    path = f"/v1/conversations/{_segment(conversation_id)}"
    return Call("PUT", path, answers.write_result, body, idempotent=idempotent)


def get_transcript(conversation_id: str) -> Call[Transcript]:
    return Call("GET", f"/v1/conversations/{_segment(conversation_id)}", answers.transcript)


def delete(kind: str, ident: str) -> Call[WriteResult]:
    """``kind``: conversations, utterances or users. Deleting twice is deleting once."""
    return Call("DELETE", f"/v1/{kind}/{_segment(ident)}", answers.write_result)


# -- errors ----------------------------------------------------------------------------------
def error_of(resp: httpx.Response) -> ApiError:
    """The ``ApiError`` for an error answer (a problem document, or any other body)."""
    title = resp.reason_phrase or "error"
    detail = resp.text[:500]
    retry_after_s: float | None = None
    try:
        data = resp.json()
    except ValueError:
        data = None
    if isinstance(data, dict):
        title = str(data.get("title") or title)
        detail = str(data.get("detail") or detail)
        ms = data.get("retry_after_ms")
        if isinstance(ms, int | float) and math.isfinite(ms):
            retry_after_s = max(0.0, ms / 1000)
    if retry_after_s is None:
        retry_after_s = _retry_after_header(resp.headers.get("retry-after"))
    return error_for(resp.status_code, title, detail, retry_after_s=retry_after_s)


def _retry_after_header(value: str | None) -> float | None:
    """``Retry-After`` in seconds (the HTTP-date form is not used by convmem: ignored)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


def decode(resp: httpx.Response, call: Call[T]) -> T:
    if resp.status_code >= 400:
        raise error_of(resp)
    try:
        data = resp.json()
    except ValueError as exc:
        raise ApiError(resp.status_code, "Bad response", f"not JSON: {resp.text[:200]}") from exc
    if not isinstance(data, dict):
        raise ApiError(resp.status_code, "Bad response", "expected a JSON object")
    try:
        return call.decode(data)
    except (KeyError, TypeError) as exc:
        raise ApiError(resp.status_code, "Bad response", f"missing field {exc}") from exc


def transport_error(exc: httpx.HTTPError, url: str) -> TransportError:
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
    return TransportError(f"{url}: request {kind}: {exc or type(exc).__name__}")
