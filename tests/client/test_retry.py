"""The retry loop, on ``httpx.MockTransport``: which calls are retried, how long they wait."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import httpx
import pytest

from convmem_client import (
    ApiError,
    AsyncClient,
    BadRequest,
    Client,
    DeadlineExceeded,
    NotFound,
    Overloaded,
    RetryPolicy,
    TransportError,
    Unauthorized,
    Unavailable,
)

OK = {"hits": [], "timings_ms": {"total": 1.5}, "degraded": [], "index_seq": 7}
Handler = Callable[[httpx.Request], httpx.Response]


def shed(retry_after: str | None = "2", retry_after_ms: int | None = None) -> httpx.Response:
    body: dict[str, object] = {"title": "Too Many Requests", "status": 429, "detail": "busy"}
    if retry_after_ms is not None:
        body["retry_after_ms"] = retry_after_ms
    headers = {"retry-after": retry_after} if retry_after is not None else {}
    return httpx.Response(429, json=body, headers=headers)


def problem(status: int, detail: str = "no") -> httpx.Response:
    return httpx.Response(status, json={"title": "T", "status": status, "detail": detail})


def scripted(*answers: httpx.Response) -> tuple[Handler, list[httpx.Request]]:
    """Answers in turn (the last one repeats); the requests seen."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers[min(len(seen), len(answers)) - 1]

    return handler, seen


def client(
    handler: Handler, sleeps: list[float], policy: RetryPolicy | None = None, r: float = 0.5
) -> Client:
    return Client(
        "http://svc",
        transport=httpx.MockTransport(handler),
        retry=policy or RetryPolicy(max_attempts=3, base_s=0.1, cap_s=5.0),
        rng=lambda: r,
        sleep=sleeps.append,
    )


def test_429_twice_then_200_sleeps_as_retry_after_says() -> None:
    handler, seen = scripted(shed("2"), shed("2"), httpx.Response(200, json=OK))
    sleeps: list[float] = []
    result = client(handler, sleeps).search("q")
    assert len(seen) == 3 and sleeps == [2.0, 2.0]
    assert result.index_seq == 7 and result.timings_ms == {"total": 1.5}


def test_the_bodys_retry_after_ms_is_preferred_to_the_header() -> None:
    handler, _ = scripted(shed("2", retry_after_ms=1500), httpx.Response(200, json=OK))
    sleeps: list[float] = []
    client(handler, sleeps).search("q")
    assert sleeps == [1.5]


def test_retry_after_is_capped_by_the_policy() -> None:
    handler, _ = scripted(shed("30"), httpx.Response(200, json=OK))
    sleeps: list[float] = []
    client(handler, sleeps, RetryPolicy(max_attempts=2, base_s=0.1, cap_s=3.0)).search("q")
    assert sleeps == [3.0]


def test_a_short_retry_after_still_waits_the_back_off() -> None:
    handler, _ = scripted(shed("0"), shed("0"), httpx.Response(200, json=OK))
    sleeps: list[float] = []
    client(handler, sleeps, r=0.5).search("q")
    assert sleeps == [0.05, 0.1]  # 0.1 * 2**n * rng


@pytest.mark.parametrize("status", [502, 503, 504])
def test_gateway_and_unavailable_answers_back_off_and_give_up(status: int) -> None:
    handler, seen = scripted(problem(status))
    sleeps: list[float] = []
    with pytest.raises(Unavailable if status != 504 else DeadlineExceeded) as caught:
        client(handler, sleeps, RetryPolicy(max_attempts=4, base_s=0.1, cap_s=5.0)).search("q")
    assert caught.value.status == status
    assert len(seen) == 4 and sleeps == pytest.approx([0.05, 0.1, 0.2])


def test_back_off_grows_and_is_capped() -> None:
    policy = RetryPolicy(max_attempts=10, base_s=0.1, cap_s=0.5)
    assert [policy.backoff_s(n, lambda: 1.0) for n in range(5)] == pytest.approx(
        [0.1, 0.2, 0.4, 0.5, 0.5]
    )
    assert policy.backoff_s(2, lambda: 0.25) == pytest.approx(0.1)  # full jitter: [0, 0.4)
    handler, _ = scripted(problem(503))
    sleeps: list[float] = []
    with pytest.raises(Unavailable):
        client(handler, sleeps, policy, r=1.0).search("q")
    assert sleeps == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5])


def test_connection_errors_are_retried_then_a_transport_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    sleeps: list[float] = []
    with pytest.raises(TransportError, match="connection refused"):
        client(refuse, sleeps).get_transcript("c1")
    assert len(sleeps) == 2


def test_a_timeout_is_a_transport_error() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("read timed out", request=request)

    with pytest.raises(TransportError, match="timed out"):
        client(slow, [], RetryPolicy(max_attempts=1)).search("q")


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, BadRequest), (401, Unauthorized), (404, NotFound), (413, BadRequest), (422, BadRequest)],
)
def test_client_errors_are_not_retried(status: int, error: type[ApiError]) -> None:
    handler, seen = scripted(problem(status, "why"))
    sleeps: list[float] = []
    with pytest.raises(error) as caught:
        client(handler, sleeps).delete_user("u1")
    assert (caught.value.status, caught.value.title, caught.value.detail) == (status, "T", "why")
    assert len(seen) == 1 and sleeps == []


def test_put_conversation_is_not_retried_unless_asked() -> None:
    handler, seen = scripted(problem(503), httpx.Response(200, json={"seq": 3}))
    sleeps: list[float] = []
    memory = client(handler, sleeps)
    with pytest.raises(Unavailable):
        memory.put_conversation("c1", user_id="u1")
    assert len(seen) == 1 and sleeps == []
    handler, seen = scripted(problem(503), httpx.Response(200, json={"seq": 3}))
    memory = client(handler, sleeps)
    assert memory.put_conversation("c1", user_id="u1", retry=True).seq == 3
    assert len(seen) == 2


def test_an_error_without_a_problem_body() -> None:
    handler, _ = scripted(httpx.Response(500, text="<html>oops</html>"))
    with pytest.raises(ApiError) as caught:
        client(handler, []).search("q")
    assert type(caught.value) is ApiError
    assert (caught.value.status, caught.value.detail) == (500, "<html>oops</html>")


def test_a_malformed_answer_is_an_api_error() -> None:
    handler, _ = scripted(httpx.Response(200, json={"accepted": 1}))
    with pytest.raises(ApiError, match="seq"):
        client(handler, []).ingest([])


def test_requests_carry_the_key_the_body_and_quoted_ids() -> None:
    handler, seen = scripted(httpx.Response(200, json=OK))
    memory = Client("http://svc", api_key="k1", transport=httpx.MockTransport(handler))
    memory.search("q", k=3, mode="dense", user_id="u", conversation_id="c", min_seq=5)
    assert seen[0].headers["authorization"] == "Bearer k1"
    assert json.loads(seen[0].content) == {
        "query": "q",
        "k": 3,
        "mode": "dense",
        "filters": {"user_id": "u", "conversation_id": "c"},
        "min_seq": 5,
    }
    handler, seen = scripted(httpx.Response(200, json={"seq": 1}))
    Client("http://svc", transport=httpx.MockTransport(handler)).delete_conversation("a/b c")
    assert seen[0].method == "DELETE" and seen[0].url.raw_path == b"/v1/conversations/a%2Fb%20c"
    assert "authorization" not in seen[0].headers


def test_ready_is_false_while_starting() -> None:
    handler, seen = scripted(problem(503, "starting"), httpx.Response(200, json={}))
    memory = client(handler, [])
    assert memory.ready() is False and memory.ready() is True and len(seen) == 2


def test_wait_ready_gives_up_as_unavailable() -> None:
    handler, _ = scripted(problem(503, "starting"))
    with pytest.raises(Unavailable, match="starting"):
        client(handler, []).wait_ready(0.0)


def test_the_policy_checks_its_values() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="base_s"):
        RetryPolicy(base_s=-1)


def test_the_async_client_retries_alike() -> None:
    handler, seen = scripted(shed("1"), problem(503), httpx.Response(200, json=OK))
    sleeps: list[float] = []

    async def sleep(s: float) -> None:
        sleeps.append(s)

    async def scenario() -> int:
        async with AsyncClient(
            "http://svc",
            transport=httpx.MockTransport(handler),
            retry=RetryPolicy(max_attempts=3, base_s=0.1, cap_s=5.0),
            rng=lambda: 0.5,
            sleep=sleep,
        ) as memory:
            with pytest.raises(Overloaded):
                await memory.put_conversation("c1")  # not retried
            return (await memory.search("q")).index_seq

    assert asyncio.run(scenario()) == 7
    assert len(seen) == 3 and sleeps == [0.05]  # the search's 503: 0.1 * 2**0 * 0.5
