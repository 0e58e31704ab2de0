"""``GrpcClient`` and ``AsyncGrpcClient`` against the real gRPC server beside REST."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from convmem_client import (
    AsyncGrpcClient,
    BadRequest,
    Client,
    ContextEvent,
    ConverseEvent,
    DeadlineExceeded,
    GrpcClient,
    Hit,
    LiveTurn,
    NotFound,
    Overloaded,
    RetryPolicy,
    SearchResult,
    StoredEvent,
    Transcript,
    TransportError,
    Unauthorized,
)
from tests.client.conftest import FRESH_MS, KEY_A, KEY_B, RETRY_AFTER_S, Live
from tests.client.data import conversation

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_ingest_then_search_with_min_seq_finds_the_turn(live: Live) -> None:
    with GrpcClient(live.target, api_key=KEY_A) as memory:
        assert memory.ready()
        ack = memory.ingest(conversation("grpc-trip", "maya"))
        assert ack.accepted == 5 and ack.seq > 0
        result = memory.search(
            "what am I allergic to", user_id="maya", k=3, min_seq=ack.seq, budget_ms=FRESH_MS
        )
    assert isinstance(result, SearchResult) and "stale_index" not in result.degraded
    top = result.hits[0]
    assert isinstance(top, Hit) and top.utterance_id == "grpc-trip-2"
    assert (top.role, top.user_id, top.turn) == ("user", "maya", 2)
    assert top.started_at.tzinfo is not None and top.context
    with Client(live.url, api_key=KEY_A) as rest:  # the same answer over both transports
        same = rest.search(
            "what am I allergic to", user_id="maya", k=3, min_seq=ack.seq, budget_ms=FRESH_MS
        )
    assert [h.utterance_id for h in same.hits] == [h.utterance_id for h in result.hits]
    assert same.hits[0].context == top.context


def test_transcript_deletes_and_tenants(live: Live) -> None:
    with GrpcClient(live.target, api_key=KEY_A) as a, GrpcClient(live.target, api_key=KEY_B) as b:
        a.put_conversation("grpc-conv", user_id="maya", agent_id="concierge", metadata={"x": "1"})
        a.ingest(conversation("grpc-conv", "maya"))
        transcript = a.get_transcript("grpc-conv")
        assert isinstance(transcript, Transcript)
        assert (transcript.user_id, transcript.agent_id, transcript.metadata) == (
            "maya",
            "concierge",
            {"x": "1"},
        )
        assert [t.turn for t in transcript.turns] == [0, 1, 2, 3, 4]
        assert transcript.turns[0].source == "text" and transcript.turns[0].ended_at is None
        with pytest.raises(NotFound) as caught:
            b.get_transcript("grpc-conv")
        assert (caught.value.status, caught.value.title) == (404, "NOT_FOUND")
        gone = a.delete_utterance("grpc-conv-0")
        assert gone.seq > 0
        assert len(a.get_transcript("grpc-conv").turns) == 4
        a.delete_conversation("grpc-conv")
        with pytest.raises(NotFound):
            a.get_transcript("grpc-conv")
        forgot = a.delete_user("maya")
        assert not a.search("peanuts", user_id="maya", min_seq=forgot.seq, budget_ms=FRESH_MS).hits


def test_a_wrong_key_is_unauthorized(live: Live) -> None:
    with GrpcClient(live.target, api_key="wrong-key-0123") as memory:
        with pytest.raises(Unauthorized) as caught:
            memory.search("anything")
    assert caught.value.status == 401 and caught.value.title == "UNAUTHENTICATED"


def test_an_invalid_request_is_a_bad_request(live: Live) -> None:
    with GrpcClient(live.target, api_key=KEY_A) as memory, pytest.raises(BadRequest) as caught:
        memory.search("anything", k=1000)
    assert caught.value.title == "INVALID_ARGUMENT" and "k" in caught.value.detail


def test_a_shed_search_is_retried_after_the_trailer(live: Live) -> None:
    held = live.admission.try_acquire("search", "tenant-a")
    sleeps: list[float] = []

    def sleep(s: float) -> None:
        sleeps.append(s)
        held.release()

    policy = RetryPolicy(max_attempts=3, base_s=0.01, cap_s=5.0)
    with GrpcClient(live.target, api_key=KEY_A, retry=policy, sleep=sleep) as memory:
        assert isinstance(memory.search("peanuts"), SearchResult)
    assert sleeps == [RETRY_AFTER_S]  # the retry-after-ms trailer, not the 10 ms back-off


def test_a_shed_search_without_retries_is_overloaded(live: Live) -> None:
    held = live.admission.try_acquire("search", "tenant-a")
    try:
        with GrpcClient(live.target, api_key=KEY_A, retry=RetryPolicy(max_attempts=1)) as memory:
            with pytest.raises(Overloaded) as caught:
                memory.search("peanuts")
    finally:
        held.release()
    assert (
        caught.value.retry_after_s == RETRY_AFTER_S and caught.value.title == "RESOURCE_EXHAUSTED"
    )


def test_a_retry_that_cannot_end_before_the_deadline_is_not_made(live: Live) -> None:
    held = live.admission.try_acquire("search", "tenant-a")
    sleeps: list[float] = []
    try:
        with GrpcClient(live.target, api_key=KEY_A, sleep=sleeps.append) as memory:
            with pytest.raises(Overloaded):
                memory.search("peanuts", timeout=0.1)  # the service asks for 0.2 s
    finally:
        held.release()
    assert sleeps == []


def test_a_deadline_too_short_is_deadline_exceeded(live: Live) -> None:
    with GrpcClient(live.target, api_key=KEY_A) as memory, pytest.raises(DeadlineExceeded):
        memory.search("peanuts", timeout=1e-6)


def test_nothing_listening_is_a_transport_error(nothing_listens: str) -> None:
    sleeps: list[float] = []
    policy = RetryPolicy(max_attempts=2)
    with GrpcClient(nothing_listens, retry=policy, sleep=sleeps.append, timeout=5) as memory:
        with pytest.raises(TransportError, match=nothing_listens):
            memory.search("anything")
    assert len(sleeps) == 1


def test_async_grpc_client_does_the_same(live: Live) -> None:
    async def scenario() -> tuple[SearchResult, Transcript]:
        async with AsyncGrpcClient(live.target, api_key=KEY_A) as memory:
            assert await memory.ready()
            ack = await memory.ingest(conversation("grpc-async", "lena"))
            result = await memory.search(
                "allergic", user_id="lena", min_seq=ack.seq, budget_ms=FRESH_MS
            )
            transcript = await memory.get_transcript("grpc-async")
            async with AsyncGrpcClient(live.target, api_key=KEY_B) as other:
                with pytest.raises(NotFound):
                    await other.get_transcript("grpc-async")
            await memory.put_conversation("grpc-async", user_id="lena")
            await memory.delete_utterance("grpc-async-0")
            await memory.delete_conversation("grpc-async")
            await memory.delete_user("lena")
            return result, transcript

    result, transcript = asyncio.run(scenario())
    assert result.hits[0].utterance_id == "grpc-async-2"
    assert len(transcript.turns) == 5


def test_async_grpc_client_retries_a_shed_search(live: Live) -> None:
    held = live.admission.try_acquire("search", "tenant-a")
    sleeps: list[float] = []

    async def sleep(s: float) -> None:
        sleeps.append(s)
        held.release()

    async def scenario() -> SearchResult:
        async with AsyncGrpcClient(live.target, api_key=KEY_A, sleep=sleep) as memory:
            return await memory.search("peanuts")

    assert isinstance(asyncio.run(scenario()), SearchResult)
    assert sleeps == [RETRY_AFTER_S]


def test_converse_streams_stored_and_context_events(live: Live) -> None:
    async def scenario() -> list[ConverseEvent]:
        async with AsyncGrpcClient(live.target, api_key=KEY_A) as memory:
            ack = await memory.ingest(conversation("grpc-earlier", "noor"))
            await memory.search("warm-up", user_id="noor", min_seq=ack.seq, budget_ms=FRESH_MS)
            events: list[ConverseEvent] = []

            async def turns() -> AsyncIterator[LiveTurn]:
                yield LiveTurn("Noor", "user", "Which hotel food should I avoid, given my allergy?")
                while not any(isinstance(e, ContextEvent) for e in events):
                    await asyncio.sleep(0.01)  # the answer first, then the stream ends

            async for event in memory.converse(
                turns(), conversation_id="grpc-live", user_id="noor", k=3, timeout=30
            ):
                events.append(event)
            return events

    events = asyncio.run(scenario())
    stored = [e for e in events if isinstance(e, StoredEvent)]
    context = [e for e in events if isinstance(e, ContextEvent)]
    assert stored and stored[0].turn == 0 and stored[0].seq > 0
    assert context and context[0].turn == 0
    assert any("peanuts" in h.text for h in context[0].hits)
    assert all(h.conversation_id == "grpc-earlier" for h in context[0].hits)
