"""``Client`` and ``AsyncClient`` against the real service on a real socket."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

from convmem_client import (
    AsyncClient,
    BadRequest,
    Client,
    Hit,
    NotFound,
    Overloaded,
    RetryPolicy,
    SearchResult,
    Transcript,
    TranscriptTurn,
    TransportError,
    Turn,
    Unauthorized,
)
from tests.client.conftest import FRESH_MS, KEY_A, KEY_B, RETRY_AFTER_S, Live
from tests.client.data import conversation

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_ingest_then_search_with_min_seq_finds_the_turn(live: Live) -> None:
    with Client(live.url, api_key=KEY_A) as memory:
        ack = memory.ingest(conversation("rest-trip", "maya"))
        assert ack.accepted == 5 and ack.seq > 0
        result = memory.search(
            "what am I allergic to", user_id="maya", k=3, min_seq=ack.seq, budget_ms=FRESH_MS
        )
    assert isinstance(result, SearchResult)
    assert "stale_index" not in result.degraded
    assert result.index_seq >= ack.seq
    top = result.hits[0]
    assert isinstance(top, Hit) and "peanuts" in top.text
    assert (top.utterance_id, top.conversation_id, top.turn) == ("rest-trip-2", "rest-trip", 2)
    assert (top.speaker, top.role, top.user_id) == ("Maya", "user", "maya")
    assert isinstance(top.started_at, datetime) and top.started_at.tzinfo is not None
    assert top.score > 0 and all(isinstance(t, Turn) for t in top.context)
    assert all(isinstance(v, float) for v in result.timings_ms.values())


def test_search_filters_and_modes_reach_the_service(live: Live) -> None:
    with Client(live.url, api_key=KEY_A) as memory:
        ack = memory.ingest(conversation("rest-filters", "omar"))
        result = memory.search(
            "dog",
            mode="lexical",
            conversation_id=["rest-filters"],
            role="user",
            min_seq=ack.seq,
            budget_ms=FRESH_MS,
        )
        assert result.hits and {h.conversation_id for h in result.hits} == {"rest-filters"}
        assert {h.role for h in result.hits} == {"user"}
        assert not memory.search("dog", user_id="nobody", min_seq=ack.seq, budget_ms=FRESH_MS).hits


def test_put_conversation_and_get_transcript(live: Live) -> None:
    with Client(live.url, api_key=KEY_A) as memory:
        memory.put_conversation(
            "rest-transcript", user_id="maya", agent_id="concierge", metadata={"channel": "phone"}
        )
        memory.ingest(conversation("rest-transcript", "maya"))
        transcript = memory.get_transcript("rest-transcript")
    assert isinstance(transcript, Transcript)
    assert (transcript.id, transcript.user_id, transcript.agent_id) == (
        "rest-transcript",
        "maya",
        "concierge",
    )
    assert transcript.metadata == {"channel": "phone"}
    assert [t.turn for t in transcript.turns] == [0, 1, 2, 3, 4]
    first = transcript.turns[0]
    assert isinstance(first, TranscriptTurn)
    assert (first.source, first.asr_confidence, first.ended_at) == ("text", None, None)
    assert first.text.startswith("Can you remind me")


def test_deletes(live: Live) -> None:
    with Client(live.url, api_key=KEY_A) as memory:
        memory.ingest(conversation("rest-del-1", "dana"))
        ack = memory.ingest(conversation("rest-del-2", "dana", day=1))
        gone = memory.delete_utterance("rest-del-2-2")
        assert gone.seq > ack.seq
        turns = memory.get_transcript("rest-del-2").turns
        assert "rest-del-2-2" not in {t.utterance_id for t in turns}
        hits = memory.search("peanuts", user_id="dana", min_seq=gone.seq, budget_ms=FRESH_MS).hits
        assert hits and "rest-del-2-2" not in {h.utterance_id for h in hits}
        memory.delete_conversation("rest-del-1")
        with pytest.raises(NotFound):
            memory.get_transcript("rest-del-1")
        with pytest.raises(NotFound):  # gone already: the effect of one delete
            memory.delete_conversation("rest-del-1")
        forgot = memory.delete_user("dana")
        assert memory.delete_user("dana").seq >= forgot.seq  # idempotent
        assert not memory.search(
            "peanuts", user_id="dana", min_seq=forgot.seq, budget_ms=FRESH_MS
        ).hits


def test_another_tenants_conversation_is_not_found(live: Live) -> None:
    with Client(live.url, api_key=KEY_A) as a, Client(live.url, api_key=KEY_B) as b:
        a.ingest(conversation("rest-tenant", "maya"))
        with pytest.raises(NotFound) as caught:
            b.get_transcript("rest-tenant")
        assert caught.value.status == 404 and caught.value.title == "Not Found"
        assert a.get_transcript("rest-tenant").turns


@pytest.mark.parametrize("key", ["wrong-key", None])
def test_a_wrong_or_missing_key_is_unauthorized(live: Live, key: str | None) -> None:
    with Client(live.url, api_key=key) as memory, pytest.raises(Unauthorized) as caught:
        memory.search("anything")
    assert caught.value.status == 401 and "API key" in caught.value.detail


def test_an_invalid_request_is_a_bad_request(live: Live) -> None:
    with Client(live.url, api_key=KEY_A) as memory, pytest.raises(BadRequest) as caught:
        memory.search("anything", k=0)
    assert caught.value.status == 422 and caught.value.detail.startswith("k:")


def test_a_shed_search_is_retried_after_retry_after(live: Live) -> None:
    held = live.admission.try_acquire("search", "tenant-a")  # the one search slot
    sleeps: list[float] = []

    def sleep(s: float) -> None:
        sleeps.append(s)
        held.release()

    policy = RetryPolicy(max_attempts=3, base_s=0.01, cap_s=5.0)
    with Client(live.url, api_key=KEY_A, retry=policy, sleep=sleep) as memory:
        result = memory.search("peanuts")
    assert sleeps == [RETRY_AFTER_S]  # the body's retry_after_ms, not the 10 ms back-off
    assert isinstance(result, SearchResult)


def test_a_shed_search_without_retries_is_overloaded(live: Live) -> None:
    held = live.admission.try_acquire("search", "tenant-a")
    try:
        no_retry = RetryPolicy(max_attempts=1)
        with Client(live.url, api_key=KEY_A, retry=no_retry) as memory:
            with pytest.raises(Overloaded) as caught:
                memory.search("peanuts")
    finally:
        held.release()
    assert caught.value.status == 429 and caught.value.retry_after_s == RETRY_AFTER_S


def test_nothing_listening_is_a_transport_error(nothing_listens: str) -> None:
    sleeps: list[float] = []
    policy = RetryPolicy(max_attempts=2)
    with Client(f"http://{nothing_listens}", retry=policy, sleep=sleeps.append) as memory:
        with pytest.raises(TransportError, match=nothing_listens):
            memory.search("anything")
        with pytest.raises(TransportError):
            memory.ready()
    assert len(sleeps) == 1


def test_ready(live: Live) -> None:
    with Client(live.url) as memory:
        assert memory.ready() is True


def test_async_client_does_the_same(live: Live) -> None:
    async def scenario() -> tuple[SearchResult, Transcript]:
        async with AsyncClient(live.url, api_key=KEY_A) as memory:
            assert await memory.ready()
            ack = await memory.ingest(conversation("rest-async", "lena"))
            result = await memory.search(
                "allergic", user_id="lena", min_seq=ack.seq, budget_ms=FRESH_MS
            )
            transcript = await memory.get_transcript("rest-async")
            async with AsyncClient(live.url, api_key=KEY_B) as other:
                with pytest.raises(NotFound):
                    await other.get_transcript("rest-async")
            await memory.delete_utterance("rest-async-0")
            await memory.put_conversation("rest-async", user_id="lena")
            await memory.delete_conversation("rest-async")
            assert (await memory.delete_user("lena")).seq > ack.seq
            return result, transcript

    result, transcript = asyncio.run(scenario())
    assert result.hits[0].utterance_id == "rest-async-2"
    assert len(transcript.turns) == 5


def test_async_client_retries_a_shed_search(live: Live) -> None:
    held = live.admission.try_acquire("search", "tenant-a")
    sleeps: list[float] = []

    async def sleep(s: float) -> None:
        sleeps.append(s)
        held.release()

    async def scenario() -> SearchResult:
        async with AsyncClient(live.url, api_key=KEY_A, sleep=sleep) as memory:
            return await memory.search("peanuts")

    assert isinstance(asyncio.run(scenario()), SearchResult)
    assert sleeps == [RETRY_AFTER_S]
