"""Bad input gets a clear 4xx problem+json; the service stays up and loses nothing."""

from __future__ import annotations

import json
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
    # found by the fuzzers: in UTC these are years 0 and 10000, which the store kept but could
    # not read back (a 503 on the transcript, and the change feed stopped for every tenant)
    (
        "started before year 1 in UTC",
        "/v1/utterances",
        {"utterances": [utterance(started_at="0001-01-01T00:00:00+14:00")]},
        422,
        "out of range",
    ),
    (
        "ended after 9999 in UTC",
        "/v1/utterances",
        {"utterances": [utterance(ended_at="9999-12-31T23:59:59-14:00")]},
        422,
        "out of range",
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


def test_what_the_fuzzers_found_is_answered_4xx_or_200_not_5xx(app_client) -> None:
    """Each of these was a 5xx before (tests/query_service/test_fuzz_rest.py and _streams)."""
    with app_client(keys={"key-alpha-123": "alpha"}) as client:
        # a NUL in a URL path id: the store cannot hold it (was 503, "store unavailable")
        for method, path in [
            ("GET", "/v1/conversations/a%00b"),
            ("PUT", "/v1/conversations/a%00b"),
            ("DELETE", "/v1/conversations/%00"),
            ("DELETE", "/v1/utterances/x%00"),
            ("DELETE", "/v1/users/%00"),
        ]:
            r = client.request(method, path, json={} if method == "PUT" else None, headers=KEY)
            assert r.status_code == 422, (method, path, r.text)
            assert r.headers["content-type"] == "application/problem+json"
            assert "NUL" in r.json()["detail"], r.json()

        # a lone surrogate in a speaker filter (was 500: the lexical index refused the string)
        raw = '{"query": "x", "filters": {"speaker": ["Maya", "\\udfff"]}}'
        r = client.post(
            "/v1/search", content=raw, headers={**KEY, "content-type": "application/json"}
        )
        assert r.status_code == 422 and "speaker" in r.json()["detail"], r.text

        # a conversation's start outside the calendar in UTC (was stored, then unreadable)
        r = client.put(
            "/v1/conversations/c-time",
            json={"started_at": "0001-01-01T00:00:00+01:00"},
            headers=KEY,
        )
        assert r.status_code == 422 and "out of range" in r.json()["detail"], r.text

        # a time phrase whose range leaves the calendar names no time (was 500, OverflowError)
        seq = client.post("/v1/utterances", json=batch("c-t", "maya", MAYA), headers=KEY).json()
        for query, reference in [
            ("peanuts in May 0000", None),
            ("peanuts in December 9999", None),
            ("peanuts last week", "0001-01-01T00:00:00+00:00"),
            ("peanuts yesterday", "0001-01-01T00:00:00-14:00"),
            ("peanuts in December", "9999-12-31T23:00:00+14:00"),
        ]:
            body = {"query": query, "min_seq": seq["seq"], "budget_ms": 2000, "mode": "lexical"}
            if reference:
                body["reference_time"] = reference
            r = client.post("/v1/search", json=body, headers=KEY)
            assert r.status_code == 200, (query, r.text)
            assert "stale_index" not in r.json()["degraded"]
            assert r.json()["hits"], query  # no time range: the peanut turns are found
        assert client.get("/readyz").status_code == 200


def test_what_the_fuzzers_found_on_the_streams_is_a_documented_error(
    database_url, tmp_path, real_embedder, model_cache
) -> None:
    """Each of these was an internal error before (a 1011 close, gRPC UNKNOWN)."""
    import grpc
    from fastapi.testclient import TestClient
    from starlette.websockets import WebSocketDisconnect

    from audio_ingest.transcriber import WhisperTranscriber
    from convmem.wiring import audio_router_for, build_services
    from query_service.app import create_app
    from query_service.grpc_gen import memory_pb2 as pb
    from query_service.grpc_server import GrpcServer
    from tests.conftest import app_settings
    from tests.query_service.conftest import wait_ready

    cfg = app_settings(database_url, tmp_path, {"key-alpha-123": "alpha"})
    server = GrpcServer(port=0, health_interval_s=0.05)
    audio = audio_router_for(
        cfg, load_transcriber=lambda: WhisperTranscriber(model="tiny.en", cache_dir=model_cache)
    )
    app = create_app(
        services_factory=lambda: build_services(cfg, embedder=real_embedder),
        api_keys=cfg.key_map(),
        routers=[audio],
        companions=[server],
    )

    def answer(path: str, *frames: Any) -> tuple[list[dict[str, Any]], int]:
        events: list[dict[str, Any]] = []
        with client.websocket_connect(path, headers=KEY) as ws:
            for frame in frames:
                ws.send_text(frame if isinstance(frame, str) else json.dumps(frame))
            try:
                while True:
                    events.append(ws.receive_json())
            except WebSocketDisconnect as exc:
                return events, exc.code

    with TestClient(app) as client:
        wait_ready(client)
        # JSON Python cannot read: nesting past the recursion limit, a 5,000-digit number
        for frame in ["[" * 60_000, '{"type": "start", "k": 1' + "0" * 5_000 + "}"]:
            events, close = answer("/v1/context/stream", frame)
            assert close == 1003 and [e["code"] for e in events] == ["bad_json"], events
            events, close = answer("/v1/audio/stream", frame)
            assert close == 1003 and [e["code"] for e in events] == ["invalid_json"], events

        # a stored turn's id made of a 256-character conversation id is over the limit
        start = {"type": "start", "conversation_id": "c" * 256}
        turn = {"type": "turn", "speaker": "Maya", "role": "user", "text": "peanuts", "store": True}
        events, close = answer("/v1/context/stream", start, turn, {"type": "end"})
        assert close == 1000, events
        assert [(e["type"], e.get("code")) for e in events] == [
            ("ready", None),
            ("error", "invalid"),
            ("end", None),
        ], events

        # a turn for a conversation of another user is the client's error, with no retry hint
        assert client.post("/v1/utterances", json=batch("c-owned", "maya", MAYA[:1]), headers=KEY)
        start = {"type": "start", "conversation_id": "c-owned", "user_id": "tom"}
        events, close = answer("/v1/context/stream", start, turn, {"type": "end"})
        error = next(e for e in events if e["type"] == "error")
        assert error["code"] == "invalid" and error.get("retry_after_ms") is None, events

        # an audio start time that is not a string, or before year 1 in UTC
        base = {"type": "start", "conversation_id": "c", "speaker": "Maya", "sample_rate": 16000}
        for started_at in [5, ["2026-05-01"], "0001-01-01T00:00:00+14:00"]:
            events, close = answer("/v1/audio/stream", {**base, "started_at": started_at})
            assert close == 1008 and [e["code"] for e in events] == ["invalid_start"], events

        # gRPC: bytes that are not the request message, and a NUL in an id
        metadata = (("authorization", "Bearer key-alpha-123"),)
        not_utf8 = b"\x0a\x02\xc3\x28"  # field 1, a string, that is not UTF-8
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            calls = [
                channel.unary_unary("/convmem.v1.Memory/Search"),
                lambda raw, **kw: channel.stream_unary("/convmem.v1.Memory/IngestStream")(
                    iter([raw]), **kw
                ),
                lambda raw, **kw: list(
                    channel.stream_stream("/convmem.v1.Memory/Converse")(iter([raw]), **kw)
                ),
            ]
            for call, raw in [(c, r) for c in calls for r in (not_utf8, b"\xff\xff\xff")]:
                with pytest.raises(grpc.RpcError) as caught:
                    call(raw, metadata=metadata, timeout=10)
                assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value
                assert "malformed request" in caught.value.details()
            delete = channel.unary_unary("/convmem.v1.Memory/DeleteUser")
            with pytest.raises(grpc.RpcError) as caught:
                delete(pb.DeleteUserRequest(user_id="\x00").SerializeToString(), metadata=metadata)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value
