"""The WebSocket endpoint ``/v1/audio/stream``: live audio in, ``final`` events out.

Protocol (every JSON message, both ways, has a ``type``):

    client: {"type": "start", "conversation_id": "...", "speaker": "...", "role": "user",
             "user_id": "...", "agent_id": "...", "sample_rate": 16000,
             "encoding": "pcm_s16le", "channels": 1, "started_at": "ISO-8601 (optional)"}
    server: {"type": "ready", "session_id": "...", "max_frame_bytes": ..., ...}
    client: binary frames of PCM (any size up to max_frame_bytes, an even byte count)
    server: {"type": "partial", "text", "start", "end"}     while a long utterance is spoken
    server: {"type": "final", "utterance_id", "text", "start", "end", "confidence", "seq"}
    server: {"type": "lagging", "behind_s", "max_lag_s", "message"}
    client: {"type": "end"}
    server: {"type": "end", "utterances": n, "audio_s": s}, then a normal close (1000)

Errors: {"type": "error", "code", "message"}, then a close with 1008 (policy: auth, a missing
or invalid start, session too long), 1003 (unsupported data: sample rate, encoding, channels,
an odd byte count, a bad message) or 1009 (frame too large); 1013 while the service starts,
and 1013 with code ``too_many_sessions`` (and ``retry_after_ms``) when the tenant holds its
cap of open sessions (``query_service.sessions``: these, the context streams and gRPC
``Converse`` together); the slot is given back however the stream ends.
Speech already received is finalised and stored before the close, and on a disconnect too.
Auth is the REST API's: ``Authorization: Bearer <key>`` decides the tenant.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from audio_ingest.audio_io import SAMPLE_RATE
from audio_ingest.protocols import Transcriber
from audio_ingest.segmenter import Segmenter
from audio_ingest.session import StreamError, StreamLimits, StreamSession, StreamStart
from audio_ingest.vad import SileroVad
from indexer.models import Role
from query_service.api_models import in_utc_range
from query_service.auth import can_write
from query_service.deps import gateway_of, tenant_of_connection
from query_service.errors import Overloaded, Unauthorized
from query_service.services import Services

_log = logging.getLogger(__name__)
START_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class VadOptions:
    threshold: float = 0.5
    min_silence_ms: int = 500
    pad_ms: int = 200
    min_speech_ms: int = 250
    max_utterance_s: float = 30.0


class _Models:
    """The transcriber and VAD, loaded once, on first use, off the event loop."""

    def __init__(self, load_transcriber: Callable[[], Transcriber]) -> None:
        self._load = load_transcriber
        self._lock = threading.Lock()
        self._models: tuple[Transcriber, SileroVad] | None = None

    def get(self) -> tuple[Transcriber, SileroVad]:
        with self._lock:
            if self._models is None:
                self._models = (self._load(), SileroVad())
            return self._models


def audio_router(
    *,
    load_transcriber: Callable[[], Transcriber],
    limits: StreamLimits | None = None,
    vad: VadOptions | None = None,
) -> APIRouter:
    limits = limits or StreamLimits()
    vad = vad or VadOptions()
    models = _Models(load_transcriber)
    router = APIRouter()

    @router.websocket("/v1/audio/stream")
    async def stream(ws: WebSocket) -> None:
        await ws.accept()
        try:
            await _serve(ws, models, limits, vad)
        except StreamError as exc:
            await _close_with_error(ws, exc.code, str(exc), exc.close_code)
        except Overloaded as exc:  # the tenant's cap of open sessions
            retry_ms = round(exc.retry_after_s * 1000)
            await _close_with_error(ws, "too_many_sessions", str(exc), 1013, retry_ms)
        except WebSocketDisconnect:
            pass

    return router


async def _serve(ws: WebSocket, models: _Models, limits: StreamLimits, vad: VadOptions) -> None:
    try:
        tenant = tenant_of_connection(ws)
    except Unauthorized as exc:
        raise StreamError("unauthorized", str(exc), 1008) from exc
    if not can_write(tenant):
        raise StreamError("forbidden", "this API key is read-only: it may not store audio", 1008)
    services: Services | None = ws.app.state.services
    if services is None:
        raise StreamError("unavailable", "the service is starting; try again shortly", 1013)
    with gateway_of(ws).open_session(tenant, transport="ws", op="audio_stream"):
        await _stream(ws, tenant, services, models, limits, vad)


async def _stream(
    ws: WebSocket,
    tenant: str,
    services: Services,
    models: _Models,
    limits: StreamLimits,
    vad: VadOptions,
) -> None:
    try:
        first = await asyncio.wait_for(ws.receive(), timeout=START_TIMEOUT_S)
    except TimeoutError as exc:
        raise StreamError("missing_start", "no start message within 10 s", 1008) from exc
    if first["type"] == "websocket.disconnect":
        return
    start = parse_start(first, tenant)
    transcriber, silero = await asyncio.to_thread(models.get)

    async def send(event: dict[str, Any]) -> None:
        if ws.application_state == WebSocketState.CONNECTED:
            await ws.send_json(event)

    segmenter = Segmenter(
        silero.probabilities,
        threshold=vad.threshold,
        neg_threshold=max(0.01, vad.threshold - 0.15),
        min_silence_ms=vad.min_silence_ms,
        pad_ms=vad.pad_ms,
        min_speech_ms=vad.min_speech_ms,
        max_utterance_s=vad.max_utterance_s,
    )
    session = StreamSession(
        start=start,
        segmenter=segmenter,
        transcriber=transcriber,
        ingestor=services.ingestor,
        send=send,
        limits=limits,
    )
    session.start()
    await send(
        {
            "type": "ready",
            "session_id": session.session_id,
            "sample_rate": SAMPLE_RATE,
            "max_frame_bytes": limits.max_frame_bytes,
            "max_session_s": limits.max_session_s,
        }
    )
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                await session.finish()  # finalise and store what was said
                return
            if message.get("bytes") is not None:
                await session.feed(message["bytes"])
                continue
            kind = _json(message.get("text")).get("type")
            if kind != "end":
                raise StreamError(
                    "unexpected_message",
                    f"after start, send binary PCM frames or {{'type': 'end'}}; got {kind!r}",
                    1003,
                )
            await session.finish()
            await send(
                {
                    "type": "end",
                    "utterances": len(session.finals),
                    "audio_s": round(session.received_s, 3),
                }
            )
            await ws.close(code=1000)
            return
    except StreamError:
        await session.finish()  # what was already said is kept
        raise
    except WebSocketDisconnect:
        await session.finish()
        raise
    except BaseException:
        await session.abort()
        raise


def parse_start(message: Mapping[str, Any], tenant: str) -> StreamStart:
    """The start message, checked; raises StreamError with the right close code."""
    if message.get("bytes") is not None:
        raise StreamError("missing_start", "the first message must be the JSON start message", 1008)
    data = _json(message.get("text"))
    if data.get("type") != "start":
        raise StreamError(
            "missing_start",
            f"the first message must have type 'start', got {data.get('type')!r}",
            1008,
        )
    if data.get("sample_rate") != SAMPLE_RATE:
        raise StreamError(
            "unsupported_sample_rate",
            f"sample_rate must be {SAMPLE_RATE} (resample on the client); got"
            f" {data.get('sample_rate')!r}",
            1003,
        )
    if data.get("encoding", "pcm_s16le") != "pcm_s16le":
        raise StreamError(
            "unsupported_encoding",
            f"encoding must be 'pcm_s16le'; got {data.get('encoding')!r}",
            1003,
        )
    if data.get("channels", 1) != 1:
        raise StreamError(
            "unsupported_channels", f"one channel only; got {data.get('channels')!r}", 1003
        )
    missing = [f for f in ("conversation_id", "speaker") if not str(data.get(f) or "").strip()]
    if missing:
        raise StreamError("invalid_start", f"start needs {', '.join(missing)}", 1008)
    try:
        role = Role(data.get("role", "user"))
        started = data.get("started_at")
        started_at = in_utc_range(datetime.fromisoformat(started)) if started else None
    except (TypeError, ValueError) as exc:  # TypeError: started_at is not a string
        raise StreamError("invalid_start", f"start: {exc}", 1008) from exc
    if started_at is not None and started_at.tzinfo is None:
        raise StreamError("invalid_start", "start: started_at needs a time zone", 1008)
    optional = {f: data.get(f) for f in ("user_id", "agent_id")}
    for name, value in optional.items():
        if value is not None and not isinstance(value, str):
            raise StreamError("invalid_start", f"start: {name} must be a string", 1008)
    return StreamStart(
        tenant=tenant,
        conversation_id=str(data["conversation_id"]),
        speaker=str(data["speaker"]),
        role=role,
        user_id=optional["user_id"],
        agent_id=optional["agent_id"],
        started_at=started_at,
    )


def _json(text: str | None) -> dict[str, Any]:
    try:
        data = json.loads(text or "")
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        raise StreamError("invalid_json", f"not a JSON message: {exc}", 1003) from exc
    if not isinstance(data, dict):
        raise StreamError("invalid_json", "a JSON message must be an object with a type", 1003)
    return data


async def _close_with_error(
    ws: WebSocket, code: str, message: str, close_code: int, retry_after_ms: int | None = None
) -> None:
    if ws.application_state != WebSocketState.CONNECTED:
        return
    event: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if retry_after_ms is not None:
        event["retry_after_ms"] = retry_after_ms
    try:
        await ws.send_json(event)
        await ws.close(code=close_code, reason=code)
    except (RuntimeError, WebSocketDisconnect):
        _log.info("client left before the error %s could be sent", code)
