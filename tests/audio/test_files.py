"""convmem ingest-audio: a stereo recording is two speakers; bad files are refused clearly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audio_ingest.audio_io import SAMPLE_RATE
from audio_ingest.files import transcribe_file
from convmem.cli import main
from indexer.pg_store import PgStore
from tests.audio.conftest import speech_16k

pytestmark = pytest.mark.integration


def stereo_call(tmp_path: Path) -> Path:
    """Left: the caller asks; right: the agent answers after her, as on a phone line."""
    left = speech_16k("Can you remind me when my dentist appointment is?", tmp_path)
    right = speech_16k("Your dentist appointment is on Friday at nine.", tmp_path, voice="en-gb")
    gap = np.zeros(SAMPLE_RATE // 2, np.float32)
    n = left.size + gap.size + right.size + SAMPLE_RATE // 2
    audio = np.zeros((n, 2), np.float32)
    audio[: left.size, 0] = left
    audio[left.size + gap.size : left.size + gap.size + right.size, 1] = right
    path = tmp_path / "call.flac"
    sf.write(str(path), audio, SAMPLE_RATE)
    return path


def test_stereo_file_ingest_attributes_both_speakers(
    tmp_path: Path, database_url: str, model_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = stereo_call(tmp_path)
    env = {
        "CONVMEM_POSTGRES__URL": database_url,
        "CONVMEM_EMBEDDER__CACHE_DIR": str(model_cache),
        "CONVMEM_DATA_DIR": str(tmp_path / "data"),
    }
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        args = ["ingest-audio", str(path), "--conversation", "call-9", "--user", "maya"]
        rc = main([*args, "--speaker", "Maya", "--speaker", "Agent"])
        out = capsys.readouterr().out
        assert rc == 0, out
        assert "ingested 2 utterances (Maya 1, Agent 1)" in out
        rc_again = main([*args, "--speaker", "Maya", "--speaker", "Agent"])  # idempotent
        assert rc_again == 0
    store = PgStore.connect(database_url)
    try:
        turns = store.transcript("default", "call-9")
    finally:
        store.close()
    assert [t.speaker for t in turns] == ["Maya", "Agent"]  # in time order, no duplicates
    assert "dentist" in turns[0].text.lower() and "friday" in turns[1].text.lower()
    assert turns[0].started_at < turns[1].started_at
    assert all(t.source.value == "asr" and 0 < (t.asr_confidence or 0) <= 1 for t in turns)


def test_transcribe_file_resamples_and_reports(tmp_path: Path, tiny_en) -> None:
    # a mono file at espeak's 22,050 Hz goes through the same path
    from tests.audio.conftest import speak

    path = speak("The meeting moved to Thursday afternoon.", tmp_path / "m.wav")
    utterances, summary = transcribe_file(
        path, transcriber=tiny_en, conversation_id="c", speakers=["Ann"]
    )
    assert summary.channels == 1 and summary.utterances == 1 and summary.audio_s > 1
    assert "thursday" in utterances[0].text.lower()


def test_bad_files_get_a_clear_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("this is not audio")
    assert main(["ingest-audio", str(not_audio), "--conversation", "c"]) == 2
    assert "not readable audio" in capsys.readouterr().err
    assert main(["ingest-audio", str(tmp_path / "missing.wav"), "--conversation", "c"]) == 2
    assert "no such file" in capsys.readouterr().err
    silent = tmp_path / "silence.wav"
    sf.write(str(silent), np.zeros(SAMPLE_RATE * 2, np.float32), SAMPLE_RATE)
    assert main(["ingest-audio", str(silent), "--conversation", "c"]) == 2
    assert "no speech found" in capsys.readouterr().err
