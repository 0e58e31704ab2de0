"""The REST API end to end: real app, real PostgreSQL, real embedder."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import drop_database
from tests.query_service.helpers import MAYA, TOM, batch

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def ingest(client: TestClient, body: dict[str, object], **headers: str) -> int:
    resp = client.post("/v1/utterances", json=body, headers=headers)
    assert resp.status_code == 200, resp.text
    n = len(body["utterances"])  # type: ignore[arg-type]
    assert resp.json()["accepted"] == n
    return int(resp.json()["seq"])


def search(client: TestClient, query: str, seq: int | None = None, **kw: Any) -> dict[str, Any]:
    headers = kw.pop("headers", {})
    body: dict[str, Any] = {"query": query, "budget_ms": 2000, **kw}
    if seq is not None:
        body["min_seq"] = seq
    resp = client.post("/v1/search", json=body, headers=headers)
    assert resp.status_code == 200, resp.text
    out: dict[str, Any] = resp.json()
    return out


def ids(result: dict[str, Any]) -> list[str]:
    return [h["utterance_id"] for h in result["hits"]]


def test_ingest_then_search_each_mode(app_client) -> None:
    with app_client() as client:
        ingest(client, batch("maya-1", "maya", MAYA))
        seq = ingest(client, batch("tom-1", "tom", TOM))
        for mode in ("hybrid", "lexical", "dense"):
            res = search(client, "what is Maya allergic to", seq, mode=mode, k=3)
            assert res["hits"], mode
            assert "maya-1-2" in ids(res)[:2], (mode, ids(res))
            assert res["degraded"] == []
            assert res["index_seq"] >= seq
        # dense finds a paraphrase with no shared words
        res = search(client, "appointment with the tooth doctor", seq, mode="dense", k=2)
        assert ids(res)[0] in {"tom-1-0", "tom-1-1"}
        top = res["hits"][0]
        assert set(top) >= {
            "utterance_id",
            "conversation_id",
            "speaker",
            "role",
            "text",
            "started_at",
            "score",
            "context",
        }
        assert {"lexical", "embed", "dense", "fuse"} <= set(
            search(client, "dentist", seq)["timings_ms"]
        )


def test_context_holds_neighbouring_turns(app_client) -> None:
    with app_client() as client:
        seq = ingest(client, batch("maya-1", "maya", MAYA))
        res = search(client, "peanut allergy hotel", seq, k=1, mode="lexical")
        hit = res["hits"][0]
        assert hit["utterance_id"] in {"maya-1-2", "maya-1-3"}
        turns = [c["turn"] for c in hit["context"]]
        assert turns == sorted(turns) and hit["turn"] not in turns
        assert all(abs(t - hit["turn"]) <= 2 for t in turns) and len(turns) == 4


def test_filters(app_client) -> None:
    with app_client() as client:
        ingest(client, batch("maya-1", "maya", MAYA))
        seq = ingest(client, batch("tom-1", "tom", TOM, day=10))
        q = "dentist cello Biscuit peanuts Lisbon"
        assert {
            h["user_id"] for h in search(client, q, seq, k=20, filters={"user_id": "tom"})["hits"]
        } == {"tom"}
        agent_only = search(client, q, seq, k=20, filters={"role": "agent"})["hits"]
        assert agent_only and {h["role"] for h in agent_only} == {"agent"}
        by_speaker = search(client, q, seq, k=20, filters={"speaker": ["Tom"]})["hits"]
        assert by_speaker and {h["speaker"] for h in by_speaker} == {"Tom"}
        later = search(client, q, seq, k=20, filters={"since": "2026-03-05T00:00:00Z"})["hits"]
        assert later and {h["conversation_id"] for h in later} == {"tom-1"}
        earlier = search(client, q, seq, k=20, filters={"until": "2026-03-05T00:00:00Z"})["hits"]
        assert earlier and {h["conversation_id"] for h in earlier} == {"maya-1"}
        listed = search(client, q, seq, k=20, filters={"conversation_id": ["maya-1"]})["hits"]
        assert {h["conversation_id"] for h in listed} == {"maya-1"}


def test_transcript_and_deletes(app_client) -> None:
    with app_client() as client:
        ingest(client, batch("maya-1", "maya", MAYA))
        ingest(client, batch("maya-2", "maya", MAYA[:2], day=3))
        seq = ingest(client, batch("tom-1", "tom", TOM))
        t = client.get("/v1/conversations/maya-1").json()
        assert t["user_id"] == "maya" and [x["utterance_id"] for x in t["turns"]] == [
            f"maya-1-{i}" for i in range(6)
        ]
        seq = client.delete("/v1/utterances/maya-1-2").json()["seq"]
        assert "maya-1-2" not in ids(search(client, "allergic to peanuts", seq, k=20))
        seq = client.delete("/v1/conversations/tom-1").json()["seq"]
        assert client.get("/v1/conversations/tom-1").status_code == 404
        assert not any(
            i.startswith("tom-1") for i in ids(search(client, "dentist cello", seq, k=20))
        )
        seq = client.delete("/v1/users/maya").json()["seq"]
        assert client.get("/v1/conversations/maya-2").status_code == 404
        assert search(client, "Lisbon sunscreen Biscuit", seq, k=20)["hits"] == []
        assert client.delete("/v1/conversations/tom-1").status_code == 404


def test_restart_serves_same_results_without_reembedding(app_client, real_embedder) -> None:
    from tests.query_service.conftest import CountingEmbedder

    with app_client() as client:
        ingest(client, batch("maya-1", "maya", MAYA))
        seq = ingest(client, batch("tom-1", "tom", TOM))
        seq = client.delete("/v1/conversations/tom-1").json()["seq"]
        before = {
            m: search(client, "what is the dog called", seq, mode=m, k=5)
            for m in ("lexical", "dense", "hybrid")
        }
    counting = CountingEmbedder(real_embedder)
    with app_client(embedder=counting) as client:
        for mode, res in before.items():
            again = search(client, "what is the dog called", mode=mode, k=5)
            assert ids(again) == ids(res)
            assert [h["score"] for h in again["hits"]] == pytest.approx(
                [h["score"] for h in res["hits"]], rel=1e-5
            )
        assert not any(i.startswith("tom-1") for i in ids(search(client, "dentist", k=20)))
        assert client.get("/v1/conversations/tom-1").status_code == 404
    assert counting.documents == 0


def test_tenants_never_see_each_other(app_client) -> None:
    keys = {"key-alpha-123": "alpha", "key-bravo-456": "bravo"}
    a = {"authorization": "Bearer key-alpha-123"}
    b = {"authorization": "Bearer key-bravo-456"}
    with app_client(keys=keys) as client:
        ingest(client, batch("maya-1", "maya", MAYA), **a)
        seq = ingest(client, batch("tom-1", "tom", TOM), **b)
        assert ids(search(client, "peanuts", seq, headers=a))
        seen_by_b = ids(search(client, "peanuts Lisbon Biscuit", seq, headers=b, k=50))
        assert seen_by_b and not any(i.startswith("maya") for i in seen_by_b)
        # the same conversation id under another tenant: 404, never 403
        r = client.get("/v1/conversations/maya-1", headers=b)
        assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
        assert client.delete("/v1/conversations/maya-1", headers=b).status_code == 404
        # a tenant named in the body is rejected, not obeyed
        r = client.post("/v1/search", json={"query": "peanuts", "tenant": "alpha"}, headers=b)
        assert r.status_code == 422
        # bravo forgetting "maya" does not touch alpha's maya
        client.delete("/v1/users/maya", headers=b)
        assert client.get("/v1/conversations/maya-1", headers=a).status_code == 200


def test_transcribed_utterances_keep_their_source_and_confidence(app_client) -> None:
    body = batch("call-1", "maya", [("Maya", "user", "I moved to Lisbon in May.")])
    utt = body["utterances"][0]  # type: ignore[index]
    end = datetime.fromisoformat(utt["started_at"]) + timedelta(seconds=4)
    utt.update(source="asr", asr_confidence=0.83, ended_at=end.isoformat())
    with app_client() as client:
        ingest(client, body)
        (turn,) = client.get("/v1/conversations/call-1").json()["turns"]
        assert turn["source"] == "asr" and turn["asr_confidence"] == pytest.approx(0.83)
        assert datetime.fromisoformat(turn["ended_at"]) == end
        utt.update(asr_confidence=1.5)
        bad = client.post("/v1/utterances", json=body)
        assert bad.status_code == 422 and "asr_confidence" in bad.text
        assert bad.headers["content-type"].startswith("application/problem+json")


def test_reference_time_needs_a_time_zone(app_client) -> None:
    with app_client() as client:
        seq = ingest(client, batch("maya-1", "maya", MAYA))
        ok = search(
            client, "what did Maya book last week", seq, reference_time="2026-05-13T09:00:00-07:00"
        )
        assert "hits" in ok
        resp = client.post(
            "/v1/search",
            json={"query": "what did Maya book last week", "reference_time": "2026-05-13T09:00:00"},
        )
        assert resp.status_code == 422
        assert "time zone" in resp.text


def test_turns_before_the_owner_was_known_are_found_by_user(app_client) -> None:
    """A conversation's first turns came without a user_id; a later turn names the user."""
    first = batch("c1", "ana", [("Ana", "user", "I adopted a greyhound named Biscuit.")])
    del first["utterances"][0]["user_id"]  # type: ignore[index]
    later = batch("c1", "ana", [("Agent", "agent", "What a lovely name for a dog.")], day=1)
    later["utterances"][0]["id"] = "c1-later"  # type: ignore[index]
    with app_client() as client:
        ingest(client, first)
        seq = ingest(client, later)
        transcript = client.get("/v1/conversations/c1").json()
        assert transcript["user_id"] == "ana" and len(transcript["turns"]) == 2
        for mode in ("lexical", "dense", "hybrid"):
            found = search(
                client, "greyhound Biscuit", seq, mode=mode, k=5, filters={"user_id": "ana"}
            )
            assert "c1-0" in ids(found), (mode, found)


def test_readyz_checks_that_the_store_answers(app_client, database_url: str) -> None:
    with app_client() as client:
        seq = ingest(client, batch("trip", "maya", MAYA))
        assert search(client, "peanuts", seq)["hits"]
        assert client.get("/readyz").status_code == 200
        assert client.get("/readyz/serving").json()["degraded"] == []
        drop_database(database_url)
        resp = client.get("/readyz")
        assert resp.status_code == 503
        assert resp.headers["content-type"].startswith("application/problem+json")
        assert "store" in resp.json()["detail"]
        assert client.get("/healthz").status_code == 200  # alive, just not ready
        # ... but still serving searches: the readinessProbe keeps it in the Service
        serving = client.get("/readyz/serving")
        assert serving.status_code == 200 and "store" in serving.json()["degraded"]
        # searches are served from the index without the store ...
        assert "trip-2" in ids(search(client, "allergic to peanuts"))[:3]
        # ... and a write says when to come back
        write = client.post("/v1/utterances", json=batch("later", "maya", MAYA))
        assert write.status_code == 503
        assert write.headers["retry-after"] == "1"
        assert write.json()["detail"] == "the store of record is unavailable; retry later"
