"""Bad input gets a clear 4xx problem+json; the service stays up and loses nothing."""

from __future__ import annotations

from typing import Any

import pytest

from tests.query_service.helpers import MAYA, TOM, batch

pytestmark = [pytest.mark.integration, pytest.mark.slow]
KEY = {"authorization": "Bearer key-alpha-123"}


def utterance(**over: Any) -> dict[str, Any]:
    u: dict[str, Any] = batch("c-bad", "maya", MAYA[:1])["utterances"][0]  # type: ignore[index]
    u.update(over)
    return u


BAD_REQUESTS: list[tuple[str, str, Any, int, str]] = [
    ("empty query", "/v1/search", {"query": ""}, 422, "query"),
    ("blank query", "/v1/search", {"query": "   \t "}, 422, "query"),
    ("k zero", "/v1/search", {"query": "x", "k": 0}, 422, "k"),
    ("k too big", "/v1/search", {"query": "x", "k": 101}, 422, "k"),
    ("unknown mode", "/v1/search", {"query": "x", "mode": "fuzzy"}, 422, "mode"),
    ("unknown field", "/v1/search", {"query": "x", "tenant": "other"}, 422, "tenant"),
    ("unknown filter", "/v1/search", {"query": "x", "filters": {"user": "u"}}, 422, "user"),
    (
        "since after until",
        "/v1/search",
        {
            "query": "x",
            "filters": {"since": "2026-05-02T00:00:00Z", "until": "2026-05-01T00:00:00Z"},
        },
        422,
        "since is later than until",
    ),
    (
        "text too long",
        "/v1/utterances",
        {"utterances": [utterance(text="a" * 10_001)]},
        422,
        "text",
    ),
    ("blank text", "/v1/utterances", {"utterances": [utterance(text="   ")]}, 422, "blank"),
    ("bad role", "/v1/utterances", {"utterances": [utterance(role="robot")]}, 422, "role"),
    (
        "naive time",
        "/v1/utterances",
        {"utterances": [utterance(started_at="2026-05-01T10:00:00")]},
        422,
        "time zone",
    ),
    ("empty batch", "/v1/utterances", {"utterances": []}, 422, "utterances"),
    (
        "batch over 1000",
        "/v1/utterances",
        {"utterances": [utterance(id=f"x{i}") for i in range(1001)]},
        422,
        "utterances",
    ),
    ("NUL in text", "/v1/utterances", {"utterances": [utterance(text="a\x00b")]}, 422, "NUL"),
    ("NUL in an id", "/v1/utterances", {"utterances": [utterance(id="x\x00")]}, 422, "NUL"),
    (
        "NUL in metadata",
        "/v1/utterances",
        {"utterances": [utterance(metadata={"k": "\x00"})]},
        422,
        "NUL",
    ),
    ("budget below 10 ms", "/v1/search", {"query": "x", "budget_ms": 5}, 422, "budget_ms"),
    (
        "unknown utterance field",
        "/v1/utterances",
        {"utterances": [utterance(tenant="t")]},
        422,
        "tenant",
    ),
]


def test_bad_input_is_rejected_and_nothing_is_lost(app_client) -> None:
    with app_client(keys={"key-alpha-123": "alpha", "key-bravo-456": "bravo"}) as client:
        ok = client.post("/v1/utterances", json=batch("maya-1", "maya", MAYA), headers=KEY)
        assert ok.status_code == 200
        seq = ok.json()["seq"]

        for name, path, body, status, needle in BAD_REQUESTS:
            r = client.post(path, json=body, headers=KEY)
            assert r.status_code == status, (name, r.text)
            assert r.headers["content-type"] == "application/problem+json", name
            problem = r.json()
            assert problem["status"] == status and needle in problem["detail"] + str(
                problem.get("errors")
            ), (name, problem)

        malformed = client.post(
            "/v1/search",
            content=b'{"query": "x",',
            headers={**KEY, "content-type": "application/json"},
        )
        assert malformed.status_code == 422 and malformed.json()["title"]

        assert client.get("/v1/conversations/nope", headers=KEY).status_code == 404
        assert client.delete("/v1/utterances/nope", headers=KEY).status_code == 404
        assert (
            client.get(
                "/v1/conversations/maya-1", headers={"authorization": "Bearer key-bravo-456"}
            ).status_code
            == 404
        )

        for headers in (
            {},
            {"authorization": "Bearer wrong-key-000"},
            {"authorization": "Basic abc"},
        ):
            r = client.post("/v1/search", json={"query": "peanuts"}, headers=headers)
            assert r.status_code == 401 and r.json()["status"] == 401
            assert r.headers["www-authenticate"] == "Bearer"
        assert client.post("/v1/utterances", json=batch("tom-1", "tom", TOM)).status_code == 401

        # a conversation owned by someone else is a conflict, and the batch is not half-applied
        clash = batch("maya-1", "tom", [("Tom", "user", "this is mine now")])
        clash["utterances"][0]["id"] = "clash-0"  # type: ignore[index]
        r = client.post("/v1/utterances", json=clash, headers=KEY)
        assert r.status_code == 409

        # still up, and every acknowledged utterance is still there and searchable
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200
        turns = client.get("/v1/conversations/maya-1", headers=KEY).json()["turns"]
        assert [t["utterance_id"] for t in turns] == [f"maya-1-{i}" for i in range(len(MAYA))]
        for i, (_, _, text) in enumerate(MAYA):
            r = client.post(
                "/v1/search",
                json={"query": text, "k": 3, "mode": "lexical", "min_seq": seq, "budget_ms": 2000},
                headers=KEY,
            )
            assert f"maya-1-{i}" in [h["utterance_id"] for h in r.json()["hits"]]


def test_an_internal_error_is_a_500_problem_without_internals(
    database_url, tmp_path, real_embedder, caplog
) -> None:
    """A ValueError from inside the service is not the client's fault: 500, nothing leaked."""
    from fastapi.testclient import TestClient

    from convmem.wiring import build_services
    from query_service.app import create_app
    from tests.conftest import app_settings
    from tests.query_service.conftest import wait_ready

    cfg = app_settings(database_url, tmp_path)
    app = create_app(services_factory=lambda: build_services(cfg, embedder=real_embedder))
    with TestClient(app, raise_server_exceptions=False) as client:
        wait_ready(client)
        searcher = client.app.state.services.searcher  # type: ignore[attr-defined]

        def broken(*_a: object, **_k: object) -> None:
            raise ValueError("secret internal detail: /etc/passwd")

        searcher.search = broken
        resp = client.post("/v1/search", json={"query": "dog"})
        assert resp.status_code == 500
        assert resp.headers["content-type"].startswith("application/problem+json")
        body = resp.json()
        assert "secret" not in resp.text and body["request_id"] in body["detail"]
        assert any(body["request_id"] in r.getMessage() for r in caplog.records)
        # a client's bad batch is still a 422, and the service is still up
        bad = {
            "utterances": [
                {
                    "id": "x",
                    "conversation_id": "c",
                    "speaker": "A",
                    "role": "user",
                    "text": "hi",
                    "started_at": "2026-01-01T00:00:00",
                }
            ]
        }
        assert client.post("/v1/utterances", json=bad).status_code == 422
        assert client.get("/healthz").status_code == 200


def test_a_lone_surrogate_is_a_422_not_a_store_error(app_client) -> None:
    import json

    body = json.dumps({"utterances": [utterance(speaker="A-PLACEHOLDER")]})
    raw = body.replace("A-PLACEHOLDER", "A\\ud800")  # JSON's own escape: valid JSON text
    with app_client() as client:
        resp = client.post(
            "/v1/utterances", content=raw, headers={"content-type": "application/json"}
        )
        assert resp.status_code == 422, resp.text
        assert "surrogate" in resp.json()["detail"]
        assert client.get("/v1/conversations/c-bad").status_code == 404


def test_a_subnormal_confidence_is_stored_not_a_store_error(app_client) -> None:
    with app_client() as client:
        body = {"utterances": [utterance(asr_confidence=1e-320, source="asr")]}
        assert client.post("/v1/utterances", json=body).status_code == 200
        (turn,) = client.get("/v1/conversations/c-bad").json()["turns"]
        assert turn["asr_confidence"] == 0.0
