"""/v1/audio/stream over a real WebSocket to a running server: partials, finals, search."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from audio_ingest.audio_io import SAMPLE_RATE, float_to_pcm16
from audio_ingest.session import silence
from tests.audio.conftest import speech_16k

pytestmark = pytest.mark.integration

LONG = (
    "My sister Priya is allergic to peanuts, so whenever we go out for dinner together"
    " we always ask the waiter about the ingredients before we order anything."
)
KEY = {"key-audio-1": "acme"}
AUTH = {"Authorization": "Bearer key-audio-1"}


def ws_url(base: str) -> str:
    return base.replace("http://", "ws://") + "/v1/audio/stream"


def start_message(**over: object) -> str:
    msg = {
        "type": "start",
        "conversation_id": "call-1",
        "user_id": "maya",
        "speaker": "Maya",
        "role": "user",
        "sample_rate": 16000,
        "encoding": "pcm_s16le",
        "channels": 1,
    }
    msg.update(over)
    return json.dumps({k: v for k, v in msg.items() if v is not None})


def events_until_close(ws: ClientConnection, timeout: float = 60) -> list[dict[str, Any]]:
    out = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            out.append(json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic()))))
    except ConnectionClosed:
        return out
    raise AssertionError(f"the server did not close the stream; events: {out}")


def test_speech_streamed_in_real_time_frames_becomes_searchable(live_server, tmp_path: Path):
    speech = speech_16k(LONG, tmp_path)
    assert speech.size / SAMPLE_RATE > 6  # long enough for partials at a 1 s interval
    audio = float_to_pcm16(np.concatenate([np.zeros(8000, np.float32), speech]))
    frame = 2 * SAMPLE_RATE // 10  # 100 ms of PCM16
    with live_server(keys=KEY) as base:
        with connect(ws_url(base), additional_headers=AUTH) as ws:
            ws.send(start_message())
            ready = json.loads(ws.recv(timeout=30))
            assert ready["type"] == "ready" and ready["sample_rate"] == 16000
            t0 = time.monotonic()
            for i in range(0, len(audio), frame):
                ws.send(audio[i : i + frame])
                # real time: 100 ms of audio per 100 ms of wall clock
                time.sleep(max(0.0, t0 + (i + frame) / 2 / SAMPLE_RATE - time.monotonic()))
            ws.send(silence(1.0))
            ws.send(json.dumps({"type": "end"}))
            events = events_until_close(ws)
            assert ws.close_code == 1000
        kinds = [e["type"] for e in events]
        partials = [e for e in events if e["type"] == "partial"]
        finals = [e for e in events if e["type"] == "final"]
        assert partials, kinds  # text before the speaker stopped
        assert len(finals) == 1 and kinds[-1] == "end"
        assert kinds.index("partial") < kinds.index("final")
        final = finals[0]
        words = final["text"].lower()
        assert "allergic" in words and "peanut" in words
        assert 0.3 <= final["start"] < final["end"] <= len(audio) / 2 / SAMPLE_RATE + 0.1
        assert 0 < final["confidence"] <= 1 and final["seq"] > 0
        # found by a paraphrase, through the REST search, at the seq the final reported
        hits = httpx.post(
            f"{base}/v1/search",
            headers=AUTH,
            json={
                "query": "which food is Priya's sister allergic to",
                "filters": {"user_id": "maya"},
                "min_seq": final["seq"],
            },
            timeout=10,
        ).json()["hits"]
        assert hits and hits[0]["utterance_id"] == final["utterance_id"]
        assert hits[0]["speaker"] == "Maya"
        transcript = httpx.get(f"{base}/v1/conversations/call-1", headers=AUTH, timeout=10)
        (turn,) = transcript.json()["turns"]
        assert turn["text"] == final["text"] and turn["source"] == "asr"
        assert turn["asr_confidence"] == pytest.approx(final["confidence"])
        assert turn["ended_at"] > turn["started_at"]


def test_a_disconnect_mid_utterance_keeps_what_was_said(live_server, tmp_path: Path):
    speech = speech_16k("We adopted a puppy called Biscuit last spring.", tmp_path)
    with live_server() as base:
        with connect(ws_url(base)) as ws:
            ws.send(start_message(conversation_id="call-2"))
            assert json.loads(ws.recv(timeout=30))["type"] == "ready"
            pcm = float_to_pcm16(speech)
            for i in range(0, len(pcm), 16_000):  # no trailing silence, no end: the line drops
                ws.send(pcm[i : i + 16_000])
        deadline = time.monotonic() + 30
        texts: list[str] = []
        while time.monotonic() < deadline and not texts:
            r = httpx.get(f"{base}/v1/conversations/call-2", timeout=10)
            texts = [u["text"] for u in r.json().get("turns", [])] if r.is_success else []
            time.sleep(0.2)
        assert texts and "biscuit" in texts[0].lower()


def bad_case(
    base: str, first: Any, frames: Sequence[bytes | str] = (), headers: Any = None
) -> tuple[list[dict[str, Any]], int | None]:
    with connect(ws_url(base), additional_headers=headers or {}) as ws:
        try:
            for message in ([first] if first is not None else []) + list(frames):
                ws.send(message)
        except ConnectionClosed:
            pass  # the server refused early (as it should); its events are still buffered
        events = events_until_close(ws, timeout=30)
        return events, ws.close_code


def test_bad_input_gets_an_error_event_and_a_close_code(live_server, tmp_path: Path):
    speech = float_to_pcm16(speech_16k("Thank you for calling.", tmp_path))
    with live_server(keys=KEY, audio={"max_frame_bytes": 32_000}) as base:
        cases: list[tuple[str, Any, Any, Any, str, int]] = [
            # (what, first message, more frames, headers, expected code, expected close)
            ("no key", start_message(), [], {}, "unauthorized", 1008),
            (
                "wrong key",
                start_message(),
                [],
                {"Authorization": "Bearer nope"},
                "unauthorized",
                1008,
            ),
            ("audio before start", b"\x00\x00" * 100, [], AUTH, "missing_start", 1008),
            ("not JSON", "hello", [], AUTH, "invalid_json", 1003),
            ("wrong type", json.dumps({"type": "audio"}), [], AUTH, "missing_start", 1008),
            ("8 kHz", start_message(sample_rate=8000), [], AUTH, "unsupported_sample_rate", 1003),
            ("mu-law", start_message(encoding="mulaw"), [], AUTH, "unsupported_encoding", 1003),
            ("stereo", start_message(channels=2), [], AUTH, "unsupported_channels", 1003),
            ("no speaker", start_message(speaker=None), [], AUTH, "invalid_start", 1008),
            ("odd bytes", start_message(), [b"\x00" * 3201], AUTH, "odd_byte_count", 1003),
            ("huge frame", start_message(), [b"\x00" * 64_000], AUTH, "frame_too_large", 1009),
            (
                "text frame",
                start_message(),
                ['{"type": "pause"}'],
                AUTH,
                "unexpected_message",
                1003,
            ),
        ]
        for what, first, frames, headers, code, close in cases:
            events, close_code = bad_case(base, first, frames, headers)
            errors = [e for e in events if e["type"] == "error"]
            assert errors and errors[-1]["code"] == code, (what, events)
            assert errors[-1]["message"], what
            assert close_code == close, (what, close_code)
        # speech already received is finalised and stored before a bad frame closes the stream
        events, close_code = bad_case(
            base,
            start_message(conversation_id="call-3"),
            [speech[i : i + 16_000] for i in range(0, len(speech), 16_000)] + [b"\x00"],
            AUTH,
        )
        assert close_code == 1003
        finals = [e for e in events if e["type"] == "final"]
        assert finals and "calling" in finals[0]["text"].lower()
        r = httpx.get(f"{base}/v1/conversations/call-3", headers=AUTH, timeout=10)
        assert [u["text"] for u in r.json()["turns"]] == [finals[0]["text"]]
        # and the service is still up
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200


def test_a_stream_past_its_length_limit_is_closed_and_keeps_its_speech(live_server, tmp_path: Path):
    speech = float_to_pcm16(speech_16k("I booked the train to Leeds for Monday.", tmp_path))
    pause = silence(1.0)
    with live_server(audio={"max_session_s": 6.0}) as base:
        frames = [speech, pause, speech]  # about 3 + 1 + 3 s: the second sentence is too much
        chunks = [f[i : i + 16_000] for f in frames for i in range(0, len(f), 16_000)]
        events, close_code = bad_case(base, start_message(conversation_id="call-4"), chunks)
        assert close_code == 1008
        assert [e["code"] for e in events if e["type"] == "error"] == ["session_too_long"]
        finals = [e for e in events if e["type"] == "final"]
        assert finals and "leeds" in finals[0]["text"].lower()
        r = httpx.get(f"{base}/v1/conversations/call-4", timeout=10)
        assert [u["text"] for u in r.json()["turns"]] == [e["text"] for e in finals]


@contextmanager
def _opened(base: str, path: str, first: str) -> Iterator[tuple[dict[str, Any], ClientConnection]]:
    """A stream, its start sent, and its first event; retried while the tenant is at its
    session cap (a session that just ended gives its slot back a moment after it closes)."""
    deadline = time.monotonic() + 10
    while True:
        with connect(base.replace("http://", "ws://") + path, additional_headers=AUTH) as ws:
            ws.send(first)
            event = json.loads(ws.recv(timeout=30))
            if event.get("code") != "too_many_sessions" or time.monotonic() > deadline:
                yield event, ws
                return
        time.sleep(0.05)


def test_open_sessions_are_capped_per_tenant_across_both_websockets(live_server):
    context_start = json.dumps({"type": "start", "conversation_id": "c", "user_id": "maya"})
    with live_server(keys=KEY, limits={"sessions_per_tenant": 1}) as base:
        with _opened(base, "/v1/context/stream", context_start) as (ready, _):
            assert ready["type"] == "ready"
            with connect(ws_url(base), additional_headers=AUTH) as ws:  # nothing sent yet
                events = events_until_close(ws)
                assert ws.close_code == 1013
            assert [e["code"] for e in events] == ["too_many_sessions"]
            assert events[0]["retry_after_ms"] == 1000
        # the context stream dropped: its slot comes back, and an audio stream takes it
        with _opened(base, "/v1/audio/stream", start_message(sample_rate=8000)) as (error, _):
            assert error["code"] == "unsupported_sample_rate"
        # that stream's error close gave its slot back too
        with _opened(base, "/v1/audio/stream", start_message()) as (ready, ws):
            assert ready["type"] == "ready"
            ws.send(json.dumps({"type": "end"}))
            assert events_until_close(ws)[-1]["type"] == "end" and ws.close_code == 1000
        with _opened(base, "/v1/context/stream", context_start) as (ready, _):
            assert ready["type"] == "ready"  # and a normal end did
