"""The ``convmem`` CLI: loading files (local and over HTTP) and clear failures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from convmem.cli import main
from indexer.pg_store import PgStore

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SMALL = Path(__file__).parent / "data" / "small_conversations.jsonl"


@pytest.fixture
def cli_env(
    monkeypatch: pytest.MonkeyPatch, database_url: str, model_cache: Path, tmp_path: Path
) -> str:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("CONVMEM_EMBEDDER__CACHE_DIR", str(model_cache))
    monkeypatch.setenv("CONVMEM_DATA_DIR", str(tmp_path / "data"))
    return database_url


def test_load_jsonl_into_the_store(cli_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    lines = [json.loads(x) for x in SMALL.read_text().splitlines() if x.strip()]
    assert main(["load", str(SMALL), "--tenant", "acme"]) == 0
    assert f"loaded {len(lines)} utterances" in capsys.readouterr().out
    store = PgStore.connect(cli_env)
    try:
        conv = lines[0]["conversation_id"]
        got = store.transcript("acme", conv)
        assert [u.id for u in got] == [x["id"] for x in lines if x["conversation_id"] == conv]
        # loading again is idempotent: no new changes
        seq = store.max_seq()
        assert main(["load", str(SMALL), "--tenant", "acme"]) == 0
        assert store.max_seq() == seq
    finally:
        store.close()


def test_load_locomo_format(cli_env: str, tmp_path: Path) -> None:
    sample = [
        {
            "sample_id": "s1",
            "conversation": {
                "speaker_a": "Ann",
                "speaker_b": "Bo",
                "session_1_date_time": "1:56 pm on 8 May, 2023",
                "session_1": [
                    {"speaker": "Ann", "dia_id": "D1:1", "text": "I adopted a cat named Miso."},
                    {"speaker": "Bo", "dia_id": "D1:2", "text": "Lovely!", "blip_caption": "a cat"},
                ],
                "session_2_date_time": "10:00 am on 9 June, 2023",
                "session_2": [{"speaker": "Bo", "dia_id": "D2:1", "text": "How is Miso?"}],
            },
            "qa": [],
        }
    ]
    path = tmp_path / "tiny_locomo.json"
    path.write_text(json.dumps(sample))
    assert main(["load", str(path), "--format", "locomo"]) == 0
    store = PgStore.connect(cli_env)
    try:
        s1 = store.transcript("default", "s1:session_1")
        assert [u.id for u in s1] == ["s1:D1:1", "s1:D1:2"]
        assert s1[1].text == "Lovely! [shares a photo: a cat]"
        assert s1[0].started_at.isoformat() == "2023-05-08T13:56:00+00:00"
        assert store.get_conversation("default", "s1:session_2").user_id == "s1"
    finally:
        store.close()


@pytest.mark.parametrize(
    ("content", "args", "needle"),
    [
        (None, [], "no such file"),
        ('{"id": "x"}\n', [], "missing field"),
        ("not json\n", [], "tiny.jsonl:1"),
        ('{"a": 1}\n', ["--format", "locomo"], "LoCoMo"),
    ],
)
def test_load_rejects_bad_files(
    cli_env: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: str | None,
    args: list[str],
    needle: str,
) -> None:
    path = tmp_path / "tiny.jsonl"
    if content is not None:
        path.write_text(content)
    assert main(["load", str(path), *args]) == 2
    assert needle in capsys.readouterr().err


def test_search_reports_an_unreachable_service(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["search", "anything", "--url", "http://127.0.0.1:9"]) == 2
    assert "cannot reach" in capsys.readouterr().err
