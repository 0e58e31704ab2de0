"""The gRPC side without a server: status codes to errors, values to messages and back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import grpc
import pytest

from convmem_client import (
    ApiError,
    BadRequest,
    Conflict,
    DeadlineExceeded,
    NotFound,
    Overloaded,
    TransportError,
    Unauthorized,
    Unavailable,
    Utterance,
    _grpc,
    converse,
)
from query_service.grpc_gen import memory_pb2 as pb


class FakeRpcError(grpc.RpcError):  # type: ignore[misc]  # grpc ships no type hints
    def __init__(
        self, code: grpc.StatusCode, details: str, trailing: tuple[tuple[str, str], ...] = ()
    ) -> None:
        self._code, self._details, self._trailing = code, details, trailing

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._trailing


C = grpc.StatusCode


@pytest.mark.parametrize(
    ("code", "error", "status"),
    [
        (C.INVALID_ARGUMENT, BadRequest, 400),
        (C.UNAUTHENTICATED, Unauthorized, 401),
        (C.PERMISSION_DENIED, Unauthorized, 403),
        (C.NOT_FOUND, NotFound, 404),
        (C.FAILED_PRECONDITION, Conflict, 409),
        (C.UNAVAILABLE, Unavailable, 503),
        (C.DEADLINE_EXCEEDED, DeadlineExceeded, 504),
        (C.INTERNAL, ApiError, 500),
    ],
)
def test_status_codes_map_to_the_rest_errors(
    code: grpc.StatusCode, error: type[ApiError], status: int
) -> None:
    err = _grpc.error_of(FakeRpcError(code, "why"), "host:1")
    assert type(err) is error and isinstance(err, ApiError)
    assert (err.status, err.title, err.detail) == (status, code.name, "why")


def test_resource_exhausted_reads_the_retry_after_trailer() -> None:
    err = _grpc.error_of(
        FakeRpcError(C.RESOURCE_EXHAUSTED, "busy", (("retry-after-ms", "250"),)), "h:1"
    )
    assert isinstance(err, Overloaded) and err.status == 429 and err.retry_after_s == 0.25
    bare = _grpc.error_of(FakeRpcError(C.RESOURCE_EXHAUSTED, "too big"), "h:1")
    assert isinstance(bare, Overloaded) and bare.retry_after_s == 0.0


def test_no_connection_is_a_transport_error() -> None:
    refused = "failed to connect to all addresses; last error: Connection refused"
    err = _grpc.error_of(FakeRpcError(C.UNAVAILABLE, refused), "h:1")
    assert isinstance(err, TransportError) and "h:1" in str(err)
    assert _grpc.retryable(err) and _grpc.retryable(Unavailable(503, "UNAVAILABLE", "starting"))
    assert not _grpc.retryable(DeadlineExceeded(504, "DEADLINE_EXCEEDED", "late"))


def test_an_utterance_becomes_a_message_with_unset_fields_left_empty() -> None:
    start = datetime(2026, 3, 2, 18, 0, tzinfo=timezone(timedelta(hours=1)))
    msg = _grpc.utterance(
        Utterance("u1", "c1", "Maya", "user", "hi", start, source="asr", asr_confidence=0.5)
    )
    assert (msg.role, msg.source, msg.user_id, msg.asr_confidence) == (
        pb.ROLE_USER,
        pb.SOURCE_ASR,
        "",
        0.5,
    )
    assert msg.started_at.ToDatetime(tzinfo=UTC) == start and not msg.HasField("ended_at")
    as_dict = _grpc.utterance(
        {
            "id": "u2",
            "conversation_id": "c1",
            "speaker": "A",
            "role": "agent",
            "text": "t",
            "started_at": "2026-03-02T18:00:00Z",
            "user_id": "maya",
        }
    )
    assert (as_dict.role, as_dict.user_id, as_dict.source) == (
        pb.ROLE_AGENT,
        "maya",
        pb.SOURCE_TEXT,
    )
    assert not as_dict.HasField("asr_confidence")


def test_bad_values_are_refused_before_sending() -> None:
    naive = datetime(2026, 3, 2, 18, 0)
    with pytest.raises(BadRequest, match="role"):
        _grpc.utterance(Utterance("u1", "c1", "M", "boss", "hi", naive.replace(tzinfo=UTC)))
    with pytest.raises(BadRequest, match="time zone"):
        _grpc.utterance(Utterance("u1", "c1", "M", "user", "hi", naive))


def test_search_request_and_response() -> None:
    call = _grpc.search(
        "q",
        k=3,
        mode="lexical",
        user_id="u",
        conversation_id=["c1", "c2"],
        speaker="Maya",
        role=["user"],
        since=None,
        until=None,
        budget_ms=None,
        min_seq=0,
        reference_time=None,
    )
    req = call.request
    assert isinstance(req, pb.SearchRequest)
    assert (req.mode, req.k, req.budget_ms, req.HasField("min_seq")) == (
        pb.MODE_LEXICAL,
        3,
        0.0,
        True,
    )
    assert list(req.filters.conversation_ids) == ["c1", "c2"]
    assert list(req.filters.roles) == [pb.ROLE_USER]
    when = datetime(2026, 3, 2, tzinfo=UTC)
    turn = pb.Turn(
        utterance_id="u1",
        conversation_id="c1",
        speaker="M",
        role=pb.ROLE_AGENT,
        text="t",
        started_at=when,
        turn=4,
    )
    response = pb.SearchResponse(
        hits=[pb.Hit(turn=turn, score=0.5, context=[turn])],
        timings_ms={"total": 2.0},
        degraded=["rerank"],
        index_seq=9,
    )
    result = call.decode(response)
    hit = result.hits[0]
    assert (hit.utterance_id, hit.role, hit.turn, hit.started_at, hit.user_id) == (
        "u1",
        "agent",
        4,
        when,
        None,
    )
    assert hit.context[0].text == "t" and result.degraded == ("rerank",)
    assert (result.index_seq, dict(result.timings_ms)) == (9, {"total": 2.0})


def test_converse_messages() -> None:
    start = converse.start_request(
        "c1", user_id=None, agent_id=None, k=None, budget_ms=None, exclude_recent=None
    )
    assert isinstance(start, pb.ConverseRequest) and not start.start.HasField("exclude_recent")
    none_excluded = converse.start_request(
        "c1", user_id="u", agent_id=None, k=3, budget_ms=20, exclude_recent=0
    )
    assert isinstance(none_excluded, pb.ConverseRequest)
    assert none_excluded.start.HasField("exclude_recent") and none_excluded.start.k == 3
    turn = converse.turn_request(converse.LiveTurn("M", "user", "hello"))
    assert isinstance(turn, pb.ConverseRequest) and turn.turn.store is True
    assert not turn.turn.HasField("started_at")
    failed = converse.event(
        pb.ConverseEvent(error=pb.TurnError(turn=-1, code="invalid", message="bad"))
    )
    assert failed == converse.TurnFailed(None, "invalid", "bad", None)
    stored = converse.event(pb.ConverseEvent(stored=pb.Stored(turn=2, utterance_id="u", seq=5)))
    assert stored == converse.StoredEvent(2, "u", 5)
