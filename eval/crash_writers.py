"""The crash check's writers and their ledger: what the service acknowledged, and nothing else.

A writer records an utterance as *acknowledged* only when the service said so: a 200 for a
REST ingest, a ``final`` event on the audio stream. A delete is recorded the same way. A call
cut off by the crash may or may not have been applied; the ledger keeps no claim about it,
and the check asks nothing of it beyond what the service's answer would have promised.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
WORDS = (
    "greyhound",
    "allergic",
    "Lisbon",
    "dentist",
    "guitar",
    "invoice",
    "camping",
    "tomatoes",
    "museum",
    "anniversary",
)


@dataclass
class Ledger:
    """conversation -> utterance id -> text, for every acknowledged write; thread-safe."""

    acked: dict[str, dict[str, str]] = field(default_factory=dict)
    deleted: dict[str, set[str]] = field(default_factory=dict)
    #: deletes sent but not acknowledged (cut off by the crash): applied or not, no claim
    maybe_deleted: dict[str, set[str]] = field(default_factory=dict)
    #: acknowledged utterances by how they came in ("rest", "audio")
    by_source: dict[str, int] = field(default_factory=dict)
    #: conversations a write was attempted for (acknowledged or not): all are checked
    touched: set[str] = field(default_factory=set)
    sent: int = 0
    failed: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def attempt(self, conversation: str) -> None:
        with self._lock:
            self.touched.add(conversation)
            self.sent += 1

    def ack(self, conversation: str, utterances: dict[str, str], *, source: str) -> None:
        with self._lock:
            self.acked.setdefault(conversation, {}).update(utterances)
            self.by_source[source] = self.by_source.get(source, 0) + len(utterances)

    def attempt_delete(self, conversation: str, uid: str) -> None:
        with self._lock:
            self.maybe_deleted.setdefault(conversation, set()).add(uid)

    def ack_delete(self, conversation: str, uid: str) -> None:
        with self._lock:
            self.deleted.setdefault(conversation, set()).add(uid)
            self.maybe_deleted.get(conversation, set()).discard(uid)

    def fail(self) -> None:
        with self._lock:
            self.failed += 1

    def live(self, conversation: str) -> set[str]:
        with self._lock:
            ids = set(self.acked.get(conversation, {}))
            ids -= self.deleted.get(conversation, set())
            return ids - self.maybe_deleted.get(conversation, set())

    def gone(self, conversation: str) -> set[str]:
        with self._lock:
            return set(self.deleted.get(conversation, set()))

    def count(self) -> tuple[int, int]:
        with self._lock:
            return sum(map(len, self.acked.values())), sum(map(len, self.deleted.values()))


class RestWriter(threading.Thread):
    """Ingests batches over REST, one conversation per batch; now and then deletes a turn."""

    def __init__(
        self,
        *,
        base_url: str,
        key: str,
        ledger: Ledger,
        stop: threading.Event,
        name: str,
        batch: int,
        rng: np.random.Generator,
        pause_s: float = 0.05,
    ) -> None:
        super().__init__(name=f"crash-writer-{name}", daemon=True)
        self._pause_s = pause_s
        self._base, self._key, self._ledger, self._halt = base_url, key, ledger, stop
        self._prefix, self._batch, self._rng = name, batch, rng

    def run(self) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {self._key}"}
        with httpx.Client(base_url=self._base, headers=headers, timeout=5.0) as client:
            n = 0
            while not self._halt.is_set():
                n += 1
                try:
                    self._one(client, f"{self._prefix}b{n}")
                    self._halt.wait(self._pause_s)
                except httpx.HTTPError:
                    self._ledger.fail()  # the crash cut the call off: no claim either way
                    self._halt.wait(0.05)

    def _one(self, client: Any, cid: str) -> None:
        token = f"probe{cid}".lower()  # one BM25 term per conversation
        batch = {
            f"{cid}-{i}": f"{token} {WORDS[(i + len(cid)) % len(WORDS)]} turn {i}"
            for i in range(self._batch)
        }
        body = {
            "utterances": [
                {
                    "id": uid,
                    "conversation_id": cid,
                    "speaker": "Maya" if i % 2 == 0 else "Agent",
                    "role": "user" if i % 2 == 0 else "agent",
                    "text": text,
                    "started_at": (T0 + timedelta(seconds=i)).isoformat(),
                    "user_id": "maya",
                }
                for i, (uid, text) in enumerate(batch.items())
            ]
        }
        self._ledger.attempt(cid)
        r = client.post("/v1/utterances", json=body)
        if r.status_code != 200:
            self._ledger.fail()
            return
        self._ledger.ack(cid, batch, source="rest")
        if self._rng.random() < 0.3:
            victim = f"{cid}-{int(self._rng.integers(self._batch))}"
            self._ledger.attempt_delete(cid, victim)
            d = client.delete(f"/v1/utterances/{victim}")
            if d.status_code == 200:
                self._ledger.ack_delete(cid, victim)


class AudioWriter(threading.Thread):
    """Streams speech over ``/v1/audio/stream``, faster than real time; each ``final`` event
    is an acknowledged utterance (the service sends it once the turn is stored)."""

    def __init__(
        self,
        *,
        base_url: str,
        key: str,
        ledger: Ledger,
        stop: threading.Event,
        name: str,
        pcm: bytes,
        speed: float = 4.0,
    ) -> None:
        super().__init__(name=f"crash-audio-{name}", daemon=True)
        self._url = base_url.replace("http://", "ws://") + "/v1/audio/stream"
        self._key, self._ledger, self._halt = key, ledger, stop
        self._prefix, self._pcm, self._speed = name, pcm, speed
        #: set once the service is ready to take audio (its speech models are loaded)
        self.ready = threading.Event()

    def run(self) -> None:
        from websockets.exceptions import WebSocketException

        n = 0
        while not self._halt.is_set():
            n += 1
            try:
                self._session(f"{self._prefix}s{n}")
            except (OSError, WebSocketException, TimeoutError, ValueError):
                self._ledger.fail()
                self._halt.wait(0.2)

    def _session(self, cid: str) -> None:
        from websockets.exceptions import ConnectionClosed
        from websockets.sync.client import connect

        headers = {"Authorization": f"Bearer {self._key}"}
        with connect(self._url, additional_headers=headers, open_timeout=5) as ws:
            ws.send(
                json.dumps(
                    {
                        "type": "start",
                        "conversation_id": cid,
                        "user_id": "maya",
                        "speaker": "Maya",
                        "role": "user",
                        "sample_rate": 16000,
                        "encoding": "pcm_s16le",
                        "channels": 1,
                    }
                )
            )
            if json.loads(ws.recv(timeout=60)).get("type") != "ready":
                return
            self.ready.set()
            self._ledger.attempt(cid)
            frame = 3200  # 100 ms of 16 kHz PCM16
            sender = threading.Thread(target=self._send, args=(ws, frame), daemon=True)
            sender.start()
            try:
                while True:
                    event = json.loads(ws.recv(timeout=60))
                    if event.get("type") == "final":
                        self._ledger.ack(
                            cid, {str(event["utterance_id"]): str(event["text"])}, source="audio"
                        )
                    elif event.get("type") in ("end", "error"):
                        break
            except ConnectionClosed:
                pass
            sender.join(5)

    def _send(self, ws: Any, frame: int) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            for i in range(0, len(self._pcm), frame):
                if self._halt.is_set():
                    break
                ws.send(self._pcm[i : i + frame])
                self._halt.wait(0.1 / self._speed)
            ws.send(json.dumps({"type": "end"}))
        except (ConnectionClosed, OSError):
            pass


def speech_pcm(sentences: Sequence[str], tmp: Path) -> bytes:
    """The sentences spoken by espeak-ng, each followed by a second of silence, as PCM16."""
    from audio_ingest.audio_io import SAMPLE_RATE, float_to_pcm16, read_audio, resample
    from audio_ingest.speech_set import speak

    parts: list[npt.NDArray[np.float32]] = []
    for i, text in enumerate(sentences):
        data, rate = read_audio(speak(text, tmp / f"s{i}.wav"))
        parts.append(resample(data[:, 0], rate, SAMPLE_RATE))
        parts.append(np.zeros(SAMPLE_RATE, np.float32))
    return float_to_pcm16(np.concatenate(parts))
