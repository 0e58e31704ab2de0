"""Admission control, limits and metrics over the real REST app."""

from __future__ import annotations

import time

import pytest

from convmem.settings import AdmissionSettings
from tests.query_service.helpers import MAYA, batch

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ONE_SLOT = AdmissionSettings(search_limit_initial=1, search_limit_min=1, search_limit_max=1)


def test_a_search_over_capacity_is_refused_at_once_with_retry_after(app_client) -> None:
    with app_client(admission=ONE_SLOT) as client:
        admission = client.app.state.gateway.admission
        held = admission.try_acquire("search", "someone-else")  # the one slot is busy
        resp = client.post("/v1/search", json={"query": "peanuts"})
        assert resp.status_code == 429
        assert resp.headers["content-type"] == "application/problem+json"
        assert int(resp.headers["retry-after"]) >= 1
        body = resp.json()
        assert body["status"] == 429 and body["reason"] == "capacity"
        assert body["retry_after_ms"] > 0
        # ingest is shed too while searches are under pressure; nothing was stored
        ingest = client.post("/v1/utterances", json=batch("c", "maya", MAYA))
        assert ingest.status_code == 429 and ingest.json()["reason"] == "priority"
        held.release(0.001)
        assert client.post("/v1/search", json={"query": "peanuts"}).status_code == 200
        time.sleep(1.1)  # two pressure windows pass: ingest is taken again
        assert client.post("/v1/utterances", json=batch("c", "maya", MAYA)).status_code == 200
        metrics = client.get("/metrics").text
        assert 'convmem_requests_total{op="search",outcome="shed",transport="rest"} 1.0' in metrics
        assert 'convmem_requests_total{op="ingest",outcome="shed",transport="rest"} 1.0' in metrics


def test_a_budget_no_search_could_meet_is_a_422(app_client) -> None:
    with app_client() as client:
        resp = client.post("/v1/search", json={"query": "peanuts", "budget_ms": 0.5})
        assert resp.status_code == 422
        assert "budget_ms" in resp.json()["detail"]
        assert client.post("/v1/search", json={"query": "peanuts"}).status_code == 200


def test_an_oversized_body_is_a_413_problem(app_client) -> None:
    with app_client(admission=AdmissionSettings(max_body_bytes=4096)) as client:
        big = batch("c", "maya", MAYA * 20)
        resp = client.post("/v1/utterances", json=big)
        assert resp.status_code == 413
        assert resp.headers["content-type"] == "application/problem+json"
        assert "4096" in resp.json()["detail"]
        chunked = client.post(
            "/v1/search",
            content=iter([b'{"query": "', b"x" * 5000, b'"}']),
            headers={"content-type": "application/json"},
        )
        assert chunked.status_code == 413
        assert client.get("/v1/conversations/c").status_code == 404  # nothing was stored
        assert client.post("/v1/search", json={"query": "peanuts"}).status_code == 200


def test_metrics_show_stages_outcomes_inflight_and_index_lag(app_client) -> None:
    with app_client() as client:
        seq = client.post("/v1/utterances", json=batch("c", "maya", MAYA)).json()["seq"]
        hit = client.post(
            "/v1/search", json={"query": "peanut allergy", "min_seq": seq, "budget_ms": 5000}
        )
        assert hit.status_code == 200
        page = client.get("/metrics")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/plain")
        text = page.text
        for stage in ("lexical", "embed", "dense", "context"):
            assert f'convmem_stage_seconds_count{{stage="{stage}"}}' in text
        assert 'convmem_requests_total{op="search",outcome="ok",transport="rest"} 1.0' in text
        assert 'convmem_requests_total{op="ingest",outcome="ok",transport="rest"} 1.0' in text
        assert 'convmem_request_seconds_bucket{le="0.05",op="search",transport="rest"}' in text
        assert 'convmem_inflight{kind="search"} 0.0' in text
        assert 'convmem_limit{kind="search"}' in text
        assert "convmem_index_lag_seq 0.0" in text
        assert "convmem_index_lag_seconds 0.0" in text
