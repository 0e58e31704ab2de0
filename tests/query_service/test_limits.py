"""Per-tenant rate limits and session caps over the real app (REST and the context stream).

gRPC's are in ``test_grpc.py``, the audio stream's in ``tests/audio/test_stream.py``. The
rates here are tiny (a token every 2 to 5 s), so nothing refills while a test makes its calls.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from convmem.settings import LimitsSettings, Settings
from tests.query_service.helpers import MAYA, TOM, batch

pytestmark = [pytest.mark.integration, pytest.mark.slow]
KEYS = {"key-acme-1111": "acme", "key-beta-2222": "beta"}
ACME = {"authorization": "Bearer key-acme-1111"}
BETA = {"authorization": "Bearer key-beta-2222"}
URL = "/v1/context/stream"


def search(client: TestClient, headers: dict[str, str], **body: Any) -> Any:
    return client.post("/v1/search", json={"query": "peanuts", **body}, headers=headers)


def wait_until(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def test_a_tenant_over_its_search_rate_gets_429_with_retry_after_and_others_do_not(
    app_client,
) -> None:
    limits = LimitsSettings(search_per_s=0.5, search_burst=3)
    with app_client(keys=KEYS, limits=limits) as client:
        for _ in range(3):
            assert search(client, ACME).status_code == 200
        over = search(client, ACME)
        assert over.status_code == 429
        assert over.headers["content-type"] == "application/problem+json"
        body = over.json()
        assert body["reason"] == "rate_limit" and body["status"] == 429
        assert 1000 < body["retry_after_ms"] <= 2000  # one token short, at 0.5/s
        assert int(over.headers["retry-after"]) == math.ceil(body["retry_after_ms"] / 1000)
        # refused before the body is read: an invalid one is a 429 too, not a 422
        assert search(client, ACME, query="").status_code == 429
        # another tenant is untouched, and so is this tenant's ingest
        for _ in range(3):
            assert search(client, BETA).status_code == 200
        stored = client.post("/v1/utterances", json=batch("c", "maya", MAYA), headers=ACME)
        assert stored.status_code == 200
        metrics = client.get("/metrics").text
        shed = 'convmem_shed_total{op="search",reason="rate_limit",transport="rest"} 2.0'
        assert shed in metrics
        assert 'convmem_requests_total{op="search",outcome="shed",transport="rest"} 2.0' in metrics
        time.sleep(body["retry_after_ms"] / 1000)  # the hint is enough
        assert search(client, ACME).status_code == 200


def test_ingest_is_counted_by_utterances_and_a_batch_over_the_burst_is_a_422(app_client) -> None:
    limits = LimitsSettings(ingest_per_s=0.5, ingest_burst=10)
    with app_client(limits=limits) as client:
        assert client.post("/v1/utterances", json=batch("a", "maya", MAYA)).status_code == 200
        # 4 of 10 left: a second batch of 6 is refused, 2 utterances short at 0.5/s
        again = client.post("/v1/utterances", json=batch("b", "maya", MAYA))
        assert again.status_code == 429 and again.json()["reason"] == "rate_limit"
        assert 3000 < again.json()["retry_after_ms"] <= 4000
        eleven = batch("big", "maya", [*MAYA, *TOM, MAYA[0]])
        too_big = client.post("/v1/utterances", json=eleven)
        assert too_big.status_code == 422 and "burst of 10" in too_big.json()["detail"]
        # a batch of 4 fits in what is left: the cost is utterances, not requests
        assert client.post("/v1/utterances", json=batch("t", "tom", TOM)).status_code == 200
        for refused in ("b", "big"):
            assert client.get(f"/v1/conversations/{refused}").status_code == 404
        assert client.get("/v1/conversations/t").status_code == 200
        # reads and searches are not counted against ingest
        assert client.get("/v1/conversations/a").status_code == 200
        assert search(client, {}).status_code == 200


def test_the_limits_are_read_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("CONVMEM_LIMITS__SEARCH_PER_S", "20")
    monkeypatch.setenv("CONVMEM_LIMITS__SEARCH_BURST", "40")
    monkeypatch.setenv("CONVMEM_LIMITS__INGEST_PER_S", "0")
    monkeypatch.setenv("CONVMEM_LIMITS__SESSIONS_PER_TENANT", "3")
    limits = Settings().limits
    rates = limits.rates()
    assert rates.search is not None and (rates.search.per_s, rates.search.burst) == (20, 40)
    assert rates.ingest is None  # 0 = off
    assert limits.sessions().per_tenant == 3
    defaults = LimitsSettings()
    assert defaults.rates().search is not None and defaults.rates().ingest is not None
    assert defaults.sessions().per_tenant == 512
    assert LimitsSettings(sessions_per_tenant=0).sessions().per_tenant is None


# -- the context stream ----------------------------------------------------------------------
def turn(text: str, **kw: Any) -> dict[str, Any]:
    return {"type": "turn", "speaker": "Maya", "role": "user", "text": text, **kw}


def until(ws: Any, kind: str) -> dict[str, Any]:
    while True:
        event: dict[str, Any] = ws.receive_json()
        if event["type"] == kind:
            return event


def start(ws: Any, conversation_id: str = "live") -> None:
    ws.send_json({"type": "start", "conversation_id": conversation_id, "user_id": "maya"})
    assert until(ws, "ready")["conversation_id"] == conversation_id


def refused(ws: Any) -> dict[str, Any]:
    """The error event of a refused session, after which the server closes with 1013."""
    error: dict[str, Any] = ws.receive_json()
    with pytest.raises(WebSocketDisconnect) as closed:
        ws.receive_json()
    assert closed.value.code == 1013
    return error


def test_a_stream_turn_over_the_search_rate_gets_a_shed_event_and_the_stream_goes_on(
    app_client,
) -> None:
    with app_client(limits=LimitsSettings(search_per_s=0.2, search_burst=1)) as client:
        with client.websocket_connect(URL) as ws:
            start(ws)
            ws.send_json(turn("Where am I travelling to this spring?", store=False))
            assert until(ws, "context")["turn"] == 0
            ws.send_json(turn("And what did I say about my peanut allergy?"))
            assert until(ws, "stored")["turn"] == 1  # the store is not a search: kept
            error = until(ws, "error")
            assert error["turn"] == 1 and error["code"] == "shed"
            assert "rate limit" in error["message"]
            assert 4000 < error["retry_after_ms"] <= 5000
            ws.send_json({"type": "end"})
            assert until(ws, "end")["turns"] == 2


def test_sessions_past_the_cap_are_refused_with_1013_and_every_ending_frees_the_slot(
    app_client,
) -> None:
    with app_client(keys=KEYS, limits=LimitsSettings(sessions_per_tenant=1)) as client:
        sessions = client.app.state.gateway.sessions

        def free() -> None:
            wait_until(lambda: sessions.held("acme") == 0)

        with client.websocket_connect(URL, headers=ACME) as ws:
            start(ws)
            with client.websocket_connect(URL, headers=ACME) as second:
                error = refused(second)
            assert error["code"] == "too_many_sessions" and error["retry_after_ms"] == 1000
            with client.websocket_connect(URL, headers=BETA) as other:  # its own cap
                start(other, "beta-live")
            ws.send_json({"type": "end"})  # a normal end
            until(ws, "end")
        free()
        with client.websocket_connect(URL, headers=ACME) as ws:  # a disconnect, no end
            start(ws, "cut")
            ws.send_json(turn("Remember my passport expires in June."))
            until(ws, "stored")
        free()
        with client.websocket_connect(URL, headers=ACME) as ws:  # an error close
            ws.send_json({"type": "start"})  # no conversation_id
            assert ws.receive_json()["code"] == "invalid_start"
        free()
        with client.websocket_connect(URL, headers=ACME) as ws:  # the slot is there again
            start(ws, "after")
        free()
        metrics = client.get("/metrics").text
        line = 'convmem_shed_total{op="context_stream",reason="sessions",transport="ws"} 1.0'
        assert line in metrics
