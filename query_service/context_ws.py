"""WebSocket ``/v1/context/stream``: a thin adapter over ``context_stream.ContextSession``.

The protocol is in ``stream_models``. Auth is the REST API's (``Authorization: Bearer``),
checked before anything is read: a wrong key closes with 1008. A tenant that holds its cap of
open sessions (``sessions``: these, the audio streams and gRPC ``Converse`` together) gets an
``error`` event (code ``too_many_sessions``, with ``retry_after_ms``) and a close with 1013,
try again later; the slot is given back however a session ends. A first message that is not a
valid ``start`` closes with 1008; a later message that is not a valid ``turn`` (or ``end``)
gets an ``error`` event (code ``invalid``) and the stream goes on. A message over
``MAX_MESSAGE_BYTES`` closes with 1009. Each stored turn is durable before ``stored`` is sent,
and a disconnect loses nothing that was acknowledged.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from fastapi import APIRouter, WebSocket
from pydantic import BaseModel, ValidationError
from starlette.websockets import WebSocketDisconnect, WebSocketState

from query_service.context_stream import ContextSession
from query_service.deps import gateway_of
from query_service.errors import Overloaded, Unauthorized
from query_service.gateway import Gateway
from query_service.stream_models import ContextStart, ContextTurn, StreamEvent, TurnError

_log = logging.getLogger(__name__)
START_TIMEOUT_S = 10.0
MAX_MESSAGE_BYTES = 64 * 1024
WS = "ws"

router = APIRouter()


class _Close(Exception):
    def __init__(
        self, code: int, error: str, message: str, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.close_code = code
        self.error = error
        self.retry_after_s = retry_after_s

    def event(self) -> dict[str, Any]:
        event: dict[str, Any] = {"type": "error", "code": self.error, "message": str(self)}
        if self.retry_after_s is not None:
            event["retry_after_ms"] = round(self.retry_after_s * 1000)
        return event


@router.websocket("/v1/context/stream")
async def context_stream(ws: WebSocket) -> None:
    await ws.accept()
    try:
        await _serve(ws)
    except _Close as exc:
        if ws.application_state == WebSocketState.CONNECTED:
            await ws.send_json(exc.event())
            await ws.close(code=exc.close_code)
    except WebSocketDisconnect:
        pass


async def _serve(ws: WebSocket) -> None:
    gateway = gateway_of(ws)
    try:
        tenant = gateway.tenant(ws.headers.get("authorization"))
    except Unauthorized as exc:
        raise _Close(1008, "unauthorized", str(exc)) from exc
    if not gateway.ready:
        raise _Close(1013, "unavailable", "the service is starting; try again shortly")
    try:
        slot = gateway.open_session(tenant, transport=WS, op="context_stream")
    except Overloaded as exc:
        raise _Close(1013, "too_many_sessions", str(exc), exc.retry_after_s) from exc
    with slot:  # given back however the session ends
        await _session(ws, gateway, tenant)


async def _session(ws: WebSocket, gateway: Gateway, tenant: str) -> None:
    try:
        first = await asyncio.wait_for(_receive_json(ws), timeout=START_TIMEOUT_S)
    except TimeoutError as exc:
        raise _Close(1008, "missing_start", "no start message within 10 s") from exc
    if first is None:
        return
    try:
        start = ContextStart.model_validate(first)
    except ValidationError as exc:
        raise _Close(1008, "invalid_start", f"start: {_first_error(exc)}") from exc

    lock = asyncio.Lock()

    async def send(event: StreamEvent | BaseModel | dict[str, Any]) -> None:
        payload = event if isinstance(event, dict) else event.model_dump(mode="json")
        async with lock:  # the reader and the search worker both send
            if ws.application_state == WebSocketState.CONNECTED:
                try:
                    await ws.send_json(payload)
                except (WebSocketDisconnect, RuntimeError):
                    pass  # gone: the reader sees the disconnect

    session = ContextSession(gateway=gateway, tenant=tenant, start=start, send=send, transport=WS)
    await send(
        {
            "type": "ready",
            "conversation_id": start.conversation_id,
            "exclude_recent": start.exclude_recent,
            "k": start.k,
        }
    )
    try:
        while True:
            message = await _receive_json(ws)
            arrival = gateway.now()
            if message is None:
                return
            kind = message.get("type")
            if kind == "end":
                await session.close()
                await send({"type": "end", "turns": session.turns})
                await ws.close(code=1000)
                return
            try:
                turn = ContextTurn.model_validate(message)
            except ValidationError as exc:
                await send(TurnError(code="invalid", message=f"turn: {_first_error(exc)}"))
                continue
            await session.turn(turn, arrival=arrival)
    finally:
        await session.close()


async def _receive_json(ws: WebSocket) -> dict[str, Any] | None:
    """The next JSON object, None on disconnect; _Close on a bad frame."""
    message = await ws.receive()
    if message["type"] == "websocket.disconnect":
        return None
    raw = message.get("text")
    if raw is None:
        raw_bytes = message.get("bytes") or b""
        if len(raw_bytes) > MAX_MESSAGE_BYTES:
            raise _Close(1009, "too_large", f"messages are at most {MAX_MESSAGE_BYTES} bytes")
        raise _Close(1003, "unsupported_data", "send JSON text messages")
    if len(raw) > MAX_MESSAGE_BYTES:
        raise _Close(1009, "too_large", f"messages are at most {MAX_MESSAGE_BYTES} bytes")
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise _Close(1003, "bad_json", f"not JSON: {exc.msg}") from exc
    except (ValueError, RecursionError) as exc:  # a number over 4,300 digits; deep nesting
        raise _Close(
            1003, "bad_json", "not JSON this server reads: a number too long or nesting too deep"
        ) from exc
    if not isinstance(data, dict):
        raise _Close(1003, "bad_json", "each message is a JSON object")
    return data


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ())) or "message"
    return f"{where}: {err.get('msg', 'invalid')}"
