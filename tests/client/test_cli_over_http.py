"""The ``--url`` paths (``convmem load``/``search``, the eval's HTTP retriever) on the client."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import pytest

from convmem.cli import main
from convmem.eval_retrievers import http_retriever
from convmem_client import Client
from eval.configs import BUILTIN_CONFIGS
from eval.errors import EvalError
from indexer.loaders import read_any
from tests.client.conftest import FRESH_MS, KEY_B, Live

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SMALL = Path(__file__).parents[1] / "data" / "small_conversations.jsonl"


def wait_fresh(url: str, seq: int) -> None:
    with Client(url, api_key=KEY_B) as memory:
        deadline = time.monotonic() + 30
        while "stale_index" in memory.search("x", min_seq=seq, budget_ms=FRESH_MS).degraded:
            assert time.monotonic() < deadline, "the index did not catch up"
            time.sleep(0.05)


def test_load_and_search_over_http(live: Live, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["load", str(SMALL), "--url", live.url, "--api-key", KEY_B]) == 0
    loaded = re.search(r"loaded 40 utterances \(seq (\d+)\)", capsys.readouterr().out)
    assert loaded is not None
    wait_fresh(live.url, int(loaded.group(1)))
    query = ["search", "Eurostar train", "--user", "alice", "--k", "3"]
    where = ["--url", live.url, "--api-key", KEY_B]
    assert main([*query, *where]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(" 1. [") and "(t-alice-1, 2026-03-02): " in lines[0]
    assert any("Eurostar" in line for line in lines)
    assert main([*query, *where, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    raw = httpx.post(
        f"{live.url}/v1/search",
        json={"query": "Eurostar train", "k": 3, "mode": "hybrid", "filters": {"user_id": "alice"}},
        headers={"authorization": f"Bearer {KEY_B}"},
    ).json()
    assert printed.keys() == raw.keys()  # the service's own JSON, as before
    assert [h.keys() for h in printed["hits"]] == [h.keys() for h in raw["hits"]]
    assert [(h["utterance_id"], h["started_at"]) for h in printed["hits"]] == [
        (h["utterance_id"], h["started_at"]) for h in raw["hits"]
    ]


def test_errors_over_http_are_reported(live: Live, capsys: pytest.CaptureFixture[str]) -> None:
    wrong = ["--url", live.url, "--api-key", "wrong-key-0123"]
    assert main(["search", "anything", *wrong]) == 2
    assert "convmem: error: 401 Unauthorized: invalid API key" in capsys.readouterr().err
    assert main(["load", str(SMALL), *wrong]) == 2
    assert "401 Unauthorized" in capsys.readouterr().err


def test_the_eval_http_retriever_loads_and_searches(live: Live) -> None:
    utterances = list(read_any(SMALL, None))
    with http_retriever(live.url, KEY_B, utterances) as retriever:
        deadline = time.monotonic() + 30
        while True:  # the retriever searches with the load's seq as min_seq
            got = retriever.search(
                "Eurostar train", k=3, user_id="alice", config=BUILTIN_CONFIGS["lexical"]
            )
            if "stale_index" not in got.degraded or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    assert got.ids and got.ids[0].startswith("t-alice-1") and got.latency_ms > 0


def test_the_eval_http_retriever_reports_an_unreachable_service(nothing_listens: str) -> None:
    with pytest.raises(EvalError, match="cannot reach"):
        with http_retriever(f"http://{nothing_listens}", None, list(read_any(SMALL, None))):
            pass
