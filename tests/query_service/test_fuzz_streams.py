"""Fuzzing the stream and gRPC inputs on a real server: documented errors, never internal ones.

One app per test (real PostgreSQL, the real embedder; REST and both WebSockets under uvicorn,
gRPC beside it), one API key. hypothesis generates what a client could send:

- ``/v1/context/stream``: start and turn messages with wrong types and odd values, any JSON,
  text that is not JSON (deep nesting, huge numbers), binary frames. The server answers with
  its documented ``error`` events and closes 1003, 1008 or 1009, or goes on; never 1011 nor
  an ``internal`` event, and a normal stream works afterwards.
- ``/v1/audio/stream``: start messages with bad fields, types and sample rates: an ``error``
  event and 1003 / 1008, or ``ready`` (then the stream ends normally); never 1011.
- gRPC: every method's request message with random field values (NUL characters, huge
  strings, out-of-range numbers, unknown enum values, timestamps past year 9999), and raw
  bytes that are not a valid message (wire-format garbage, strings that are not UTF-8) sent
  through a generic call: the status is a client's one or OK, never UNKNOWN or INTERNAL.

Deterministic: hypothesis is derandomized, no example database. By default 300 context
streams, 300 audio starts and 100 calls for each of the 9 gRPC methods (half typed, half raw),
about 10 s in all; ``CONVMEM_FUZZ_WS``, ``CONVMEM_FUZZ_AUDIO`` and ``CONVMEM_FUZZ_GRPC``
change the counts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import hypothesis
import pytest
from google.protobuf.message import Message  # type: ignore[import-untyped]  # no stubs
from hypothesis import HealthCheck, given
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from audio_ingest.transcriber import WhisperTranscriber
from convmem.wiring import audio_router_for
from indexer.protocols import Embedder
from query_service.grpc_gen import memory_pb2 as pb
from query_service.grpc_server import GrpcServer
from tests.conftest import app_settings
from tests.query_service.conftest import app_for
from tests.query_service.fuzz_inputs import (
    FRAME,
    RAW,
    audio_start,
    context_start,
    context_turn,
    fill,
    proto_dicts,
)
from tests.query_service.live_server import serve

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    # a failing example holds a 60 kB frame: hypothesis warns as it prints it
    pytest.mark.filterwarnings(
        "ignore:Generating overly large repr:hypothesis.errors.HypothesisWarning"
    ),
    # the server's threads use the random module (psycopg_pool jitters connection lifetimes);
    # hypothesis sees the global state move during a draw and blames the strategy
    pytest.mark.filterwarnings(
        "ignore:Do not use the `random` module inside strategies"
        ":hypothesis.errors.HypothesisDeprecationWarning"
    ),
]

KEY = "fuzz-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
METADATA = (("authorization", f"Bearer {KEY}"),)
WS_EXAMPLES = int(os.environ.get("CONVMEM_FUZZ_WS", "300"))
AUDIO_EXAMPLES = int(os.environ.get("CONVMEM_FUZZ_AUDIO", "300"))
#: per gRPC method, for typed messages and for raw bytes each
GRPC_EXAMPLES = int(os.environ.get("CONVMEM_FUZZ_GRPC", "50"))

SETTINGS = hypothesis.settings(
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=False,
    suppress_health_check=list(HealthCheck),
)


@dataclass(frozen=True)
class Live:
    url: str
    grpc_target: str

    @property
    def ws(self) -> str:
        return self.url.replace("http://", "ws://")


@pytest.fixture
def live(
    database_url: str, tmp_path: Path, real_embedder: Embedder, model_cache: Path
) -> Iterator[Live]:
    cfg = app_settings(database_url, tmp_path, {KEY: "acme"})
    grpc_server = GrpcServer(port=0, health_interval_s=0.05)
    audio = audio_router_for(  # Whisper loads only when a start message is valid
        cfg, load_transcriber=lambda: WhisperTranscriber(model="tiny.en", cache_dir=model_cache)
    )
    app = app_for(cfg, real_embedder, routers=[audio], companions=[grpc_server])
    with serve(app) as url:
        yield Live(url=url, grpc_target=f"127.0.0.1:{grpc_server.port}")


# -- the context WebSocket -----------------------------------------------------------------
CONTEXT_CLOSE = {1000, 1003, 1008, 1009}
#: the codes ``context_ws`` and ``context_stream`` document (``internal`` is a bug)
CONTEXT_ERRORS = {
    "bad_json",
    "unsupported_data",
    "too_large",
    "invalid_start",
    "missing_start",
    "invalid",
    "shed",
    "deadline",
    "unavailable",
    "forbidden",
}


def exchange(url: str, frames: list[str | bytes]) -> tuple[list[dict[str, Any]], int | None]:
    """Send the frames, then ``end``; every event until the server closes, and its code."""
    with connect(url, additional_headers=AUTH, max_size=None, open_timeout=20) as ws:
        try:
            for frame in frames:
                ws.send(frame)
            ws.send(json.dumps({"type": "end"}))
        except ConnectionClosed:
            pass  # the server closed early; what it sent first is still buffered
        events: list[dict[str, Any]] = []
        try:
            while True:
                events.append(json.loads(ws.recv(timeout=30)))
        except ConnectionClosed:
            return events, ws.close_code


def check_closed_as_documented(
    events: list[dict[str, Any]], close: int | None, codes: set[str], closes: set[int]
) -> None:
    assert close in closes, (close, events)
    errors = [e for e in events if e.get("type") == "error"]
    for error in errors:
        assert error["code"] in codes and error["message"], error
    if close == 1000:
        assert events and events[-1]["type"] == "end", events
    else:
        assert errors and events[-1] is errors[-1], (close, events)


def test_the_context_stream_answers_any_input_as_documented(live) -> None:
    url = f"{live.ws}/v1/context/stream"
    first = context_start(junk=False) | context_start(junk=True) | FRAME
    later = st.lists(context_turn(junk=False) | context_turn(junk=True) | FRAME, max_size=4)

    @hypothesis.settings(SETTINGS, max_examples=WS_EXAMPLES)
    @given(first=first, later=later)
    def fuzz(first: str | bytes, later: list[str | bytes]) -> None:
        events, close = exchange(url, [first, *later])
        check_closed_as_documented(events, close, CONTEXT_ERRORS, CONTEXT_CLOSE)
        for e in events:
            key = f"{close} {e['type']} {e.get('code', '')}"
            seen[key] = seen.get(key, 0) + 1

    seen: dict[str, int] = {}
    fuzz()
    print(sorted(seen.items()))  # noqa: T201
    # still serving: a stream stores a turn and answers it
    start = {"type": "start", "conversation_id": "after-fuzz", "user_id": "maya"}
    turn = {"type": "turn", "speaker": "Maya", "role": "user", "text": "I am allergic to nuts"}
    events, close = exchange(url, [json.dumps(start), json.dumps(turn)])
    assert close == 1000, events
    assert [e["type"] for e in events] == ["ready", "stored", "context", "end"], events


# -- the audio WebSocket -------------------------------------------------------------------
AUDIO_ERRORS = {
    "missing_start",
    "invalid_json",
    "unsupported_sample_rate",
    "unsupported_encoding",
    "unsupported_channels",
    "invalid_start",
}


def test_the_audio_stream_answers_any_start_as_documented(live) -> None:
    url = f"{live.ws}/v1/audio/stream"

    @hypothesis.settings(SETTINGS, max_examples=AUDIO_EXAMPLES)
    @given(first=audio_start(junk=False) | audio_start(junk=True) | FRAME)
    def fuzz(first: str | bytes) -> None:
        events, close = exchange(url, [first])
        check_closed_as_documented(events, close, AUDIO_ERRORS, {1000, 1003, 1008})
        if close == 1000:
            assert [e["type"] for e in events] == ["ready", "end"], events
        key = f"{close} {events[-1].get('code', events[-1]['type'])}"
        seen[key] = seen.get(key, 0) + 1

    seen: dict[str, int] = {}
    fuzz()
    print(sorted(seen.items()))  # noqa: T201
    start = {"type": "start", "conversation_id": "c", "speaker": "Maya", "sample_rate": 16000}
    events, close = exchange(url, [json.dumps(start)])
    assert close == 1000 and [e["type"] for e in events] == ["ready", "end"], events


# -- gRPC ----------------------------------------------------------------------------------
Code = grpc.StatusCode
#: a client's mistakes, refusals, and success; FAILED_PRECONDITION is REST's 409 (the
#: conversation belongs to another user). UNKNOWN, INTERNAL and UNAVAILABLE are bugs here.
ALLOWED = {
    Code.OK,
    Code.INVALID_ARGUMENT,
    Code.NOT_FOUND,
    Code.RESOURCE_EXHAUSTED,
    Code.UNAUTHENTICATED,
    Code.PERMISSION_DENIED,
    Code.DEADLINE_EXCEEDED,
    Code.FAILED_PRECONDITION,
}


@dataclass(frozen=True)
class Method:
    name: str
    request: type[Message]
    streaming_request: bool = False
    streaming_response: bool = False


METHODS = [
    Method("Search", pb.SearchRequest),
    Method("Ingest", pb.IngestRequest),
    Method("IngestStream", pb.IngestRequest, streaming_request=True),
    Method("PutConversation", pb.PutConversationRequest),
    Method("GetTranscript", pb.GetTranscriptRequest),
    Method("DeleteConversation", pb.DeleteConversationRequest),
    Method("DeleteUtterance", pb.DeleteUtteranceRequest),
    Method("DeleteUser", pb.DeleteUserRequest),
    Method("Converse", pb.ConverseRequest, streaming_request=True, streaming_response=True),
]


def call(channel: grpc.Channel, method: Method, requests: list[bytes], metadata: Any) -> str:
    """Send the serialized requests to the method; the name of the status it ends with."""
    path = f"/convmem.v1.Memory/{method.name}"
    try:
        if method.streaming_request and method.streaming_response:
            stream = channel.stream_stream(path)  # no serializers: bytes as they are
            for raw in stream(iter(requests), metadata=metadata, timeout=30):
                event = pb.ConverseEvent.FromString(raw)
                assert event.WhichOneof("kind") != "error" or event.error.code != "internal"
        elif method.streaming_request:
            channel.stream_unary(path)(iter(requests), metadata=metadata, timeout=30)
        else:
            channel.unary_unary(path)(requests[0], metadata=metadata, timeout=30)
    except grpc.RpcError as exc:
        code = exc.code()  # a grpc.Call too
        assert code in ALLOWED, (method.name, code, exc.details())
        return str(code.name)
    return "OK"


METADATA_CHOICES = st.sampled_from([METADATA] * 6 + [(), (("authorization", "Bearer wrong"),)])


@pytest.mark.parametrize("method", METHODS, ids=[m.name for m in METHODS])
def test_grpc_answers_any_request_with_a_client_status(live, method: Method) -> None:
    messages = st.one_of(
        [
            proto_dicts(method.request.DESCRIPTOR, junk=junk).map(
                lambda fields: fill(method.request(), fields).SerializeToString()
            )
            for junk in (False, True)
        ]
    )
    n = 3 if method.streaming_request else 1
    typed = st.lists(messages, min_size=1, max_size=n)
    raw = st.lists(RAW, min_size=1, max_size=n)
    if method.name == "Converse":  # most streams start as they should, then anything
        start = proto_dicts(pb.ConverseStart.DESCRIPTOR, junk=False).map(
            lambda f: pb.ConverseRequest(start=fill(pb.ConverseStart(), f)).SerializeToString()
        )
        typed |= st.tuples(start, typed).map(lambda t: [t[0], *t[1]])
        raw = st.tuples(start, raw).map(lambda t: [t[0], *t[1]])
    seen: dict[str, int] = {}

    def run(requests: st.SearchStrategy[list[bytes]]) -> None:
        @hypothesis.settings(SETTINGS, max_examples=GRPC_EXAMPLES)
        @given(requests=requests, metadata=METADATA_CHOICES)
        def fuzz(requests: list[bytes], metadata: Any) -> None:
            code = call(channel, method, requests, metadata)
            seen[code] = seen.get(code, 0) + 1

        fuzz()

    with grpc.insecure_channel(live.grpc_target) as channel:
        run(typed)
        run(raw)
        # still serving
        ok = pb.SearchRequest(query="peanuts", budget_ms=2000)
        channel.unary_unary("/convmem.v1.Memory/Search")(
            ok.SerializeToString(), metadata=METADATA, timeout=30
        )
    assert httpx.get(f"{live.url}/readyz", timeout=5).status_code == 200
    print(method.name, sorted(seen.items()))  # noqa: T201
