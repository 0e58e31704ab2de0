"""The live context stream over a real WebSocket: real app, PostgreSQL and embedder."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

from tests.query_service.helpers import MAYA, batch

pytestmark = [pytest.mark.integration, pytest.mark.slow]
URL = "/v1/context/stream"


def seed(client: TestClient) -> int:
    resp = client.post("/v1/utterances", json=batch("trip", "maya", MAYA))
    assert resp.status_code == 200, resp.text
    seq = int(resp.json()["seq"])
    # a search with min_seq waits for the index to cover the batch
    wait = client.post("/v1/search", json={"query": "Lisbon", "min_seq": seq, "budget_ms": 5000})
    assert wait.status_code == 200
    return seq


def turn(text: str, speaker: str = "Maya", role: str = "user", **kw: Any) -> dict[str, Any]:
    return {"type": "turn", "speaker": speaker, "role": role, "text": text, **kw}


def until(ws: WebSocketTestSession, kind: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read events until one of ``kind``; returns it and those before it."""
    seen: list[dict[str, Any]] = []
    while True:
        event = ws.receive_json()
        if event["type"] == kind:
            return event, seen
        seen.append(event)


def test_turns_are_stored_and_answered_with_the_users_other_conversations(app_client) -> None:
    with app_client() as client:
        seed(client)
        with client.websocket_connect(URL) as ws:
            ws.send_json({"type": "start", "conversation_id": "call-2", "user_id": "maya"})
            ready = ws.receive_json()
            assert ready["type"] == "ready" and ready["exclude_recent"] == 4
            ws.send_json(turn("What should the hotel know about my food allergy?"))
            stored = ws.receive_json()
            assert stored["type"] == "stored" and stored["turn"] == 0 and stored["seq"] > 0
            context, _ = until(ws, "context")
            assert context["turn"] == 0
            hit_ids = [h["utterance_id"] for h in context["hits"]]
            assert "trip-2" in hit_ids  # "I am allergic to peanuts", an earlier call
            assert context["timings_ms"] and isinstance(context["degraded"], list)
            assert all(h["context"] is not None for h in context["hits"])
            ws.send_json({"type": "end"})
            end, _ = until(ws, "end")
            assert end["turns"] == 1
        transcript = client.get("/v1/conversations/call-2").json()
        assert [t["text"] for t in transcript["turns"]] == [
            "What should the hotel know about my food allergy?"
        ]


def test_no_memory_is_sent_twice_and_recent_turns_are_never_sent_back(app_client) -> None:
    with app_client() as client:
        seed(client)
        with client.websocket_connect(URL) as ws:
            ws.send_json({"type": "start", "conversation_id": "call-3", "user_id": "maya", "k": 10})
            until(ws, "ready")
            questions = [
                "Tell me about my peanut allergy and the hotel.",
                "What about the peanut allergy, did you tell the hotel?",
                "Who looks after my dog Biscuit while I am away?",
            ]
            sent: list[str] = []
            own: list[str] = []
            for q in questions:
                ws.send_json(turn(q))
                stored, _ = until(ws, "stored")
                own.append(stored["utterance_id"])
                context, _ = until(ws, "context")
                sent += [h["utterance_id"] for h in context["hits"]]
            assert len(sent) == len(set(sent)), "a memory was sent twice on one stream"
            assert not set(own) & set(sent), "the agent's own recent turns came back"
            assert "trip-2" in sent and "trip-4" in sent


def test_turns_faster_than_searches_supersede_each_other_and_all_are_accounted(
    app_client,
) -> None:
    with app_client() as client:
        seed(client)
        with client.websocket_connect(URL) as ws:
            ws.send_json({"type": "start", "conversation_id": "flood", "user_id": "maya"})
            until(ws, "ready")
            n = 200
            for i in range(n):
                ws.send_json(turn(f"peanut allergy hotel question number {i}", store=False))
            ws.send_json({"type": "end"})
            end, events = until(ws, "end")
        contexts = [e for e in events if e["type"] == "context"]
        shed = [e for e in events if e["type"] == "error"]
        assert end["turns"] == n
        assert len(contexts) < n  # the latest turn won while a search ran
        assert sum(e["superseded"] for e in contexts) + len(contexts) + len(shed) == n
        assert contexts[-1]["turn"] == n - 1 or shed[-1]["turn"] == n - 1
        turns = [e["turn"] for e in contexts]
        assert turns == sorted(turns)
        assert client.get("/readyz").status_code == 200


def test_a_bad_turn_gets_an_error_event_and_the_stream_goes_on(app_client) -> None:
    with app_client() as client:
        seed(client)
        with client.websocket_connect(URL) as ws:
            ws.send_json({"type": "start", "conversation_id": "c", "user_id": "maya"})
            until(ws, "ready")
            ws.send_json(turn("hi", role="wizard"))
            error = ws.receive_json()
            assert error["type"] == "error" and error["code"] == "invalid"
            assert "role" in error["message"]
            ws.send_json(turn("peanut allergy?", store=False))
            context, _ = until(ws, "context")
            assert context["turn"] == 0  # a message that was not a turn is not counted


@pytest.mark.parametrize(
    ("first", "code"),
    [
        ({"type": "turn", "text": "no start"}, "invalid_start"),
        ({"type": "start"}, "invalid_start"),
        ({"type": "start", "conversation_id": "c", "k": "many"}, "invalid_start"),
    ],
)
def test_a_bad_start_closes_with_policy_violation(app_client, first, code) -> None:
    with app_client() as client, client.websocket_connect(URL) as ws:
        ws.send_json(first)
        error = ws.receive_json()
        assert error == {"type": "error", "code": code, "message": error["message"]}
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == 1008


def test_an_oversized_or_non_json_message_closes_the_stream(app_client) -> None:
    with app_client() as client:
        with client.websocket_connect(URL) as ws:
            ws.send_text("x" * (65 * 1024))
            assert ws.receive_json()["code"] == "too_large"
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
            assert closed.value.code == 1009
        with client.websocket_connect(URL) as ws:
            ws.send_text("{not json")
            assert ws.receive_json()["code"] == "bad_json"
        assert client.get("/readyz").status_code == 200


def test_a_wrong_key_is_refused_before_anything_is_read(app_client) -> None:
    with app_client(keys={"key-aaaaaaaa": "acme"}) as client:
        headers = {"authorization": "Bearer wrong-key-123"}
        with client.websocket_connect(URL, headers=headers) as ws:
            error = ws.receive_json()
            assert error["code"] == "unauthorized"
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
            assert closed.value.code == 1008


def test_a_client_that_disconnects_mid_stream_loses_no_stored_turn(app_client) -> None:
    with app_client() as client:
        seed(client)
        with client.websocket_connect(URL) as ws:
            ws.send_json({"type": "start", "conversation_id": "cut", "user_id": "maya"})
            until(ws, "ready")
            ws.send_json(turn("Remember that my passport expires in June."))
            until(ws, "stored")
            ws.send_json(turn("And I prefer a window seat.", store=True))
            until(ws, "stored")
        # gone without an end message
        transcript = client.get("/v1/conversations/cut")
        assert transcript.status_code == 200
        assert len(transcript.json()["turns"]) == 2
        assert client.get("/readyz").status_code == 200
