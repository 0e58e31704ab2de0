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
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import hypothesis
import pytest
from google.protobuf.descriptor import (  # type: ignore[import-untyped]  # no stubs
    Descriptor,
    FieldDescriptor,
)
from google.protobuf.message import Message  # type: ignore[import-untyped]  # no stubs
from hypothesis import HealthCheck, given
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from audio_ingest.transcriber import WhisperTranscriber
from convmem.wiring import audio_router_for, build_auth, build_services
from indexer.protocols import Embedder
from query_service.app import create_app
from query_service.grpc_gen import memory_pb2 as pb
from query_service.grpc_server import GrpcServer
from tests.conftest import app_settings
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
    app = create_app(
        services_factory=lambda: build_services(cfg, embedder=real_embedder),
        auth=build_auth(cfg),
        routers=[audio],
        companions=[grpc_server],
        rates=cfg.limits.rates(),
        sessions=cfg.limits.sessions(),
    )
    with serve(app) as url:
        yield Live(url=url, grpc_target=f"127.0.0.1:{grpc_server.port}")


# -- what a client could send --------------------------------------------------------------
#: strings that have broken servers: NUL, a lone surrogate (as a JSON escape), blanks, long
NASTY = st.sampled_from(
    ["", " ", "\t\n", "\x00", "a\x00b", "\ud800", "x\udfff", "\u2028", "🙂", "x" * 300]
)
TEXT = st.text(max_size=40) | NASTY
#: times that are valid ISO 8601 but fall outside years 1-9999 in UTC, or are not times
TIMES = st.sampled_from(
    [
        "2026-05-01T09:00:00Z",
        "2026-05-01T09:00:00",
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59-14:00",
        "0001-01-01T00:00:00Z",
        "not a time",
        "",
    ]
)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | TEXT | TIMES
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=6,
)
#: text frames that are not JSON a server can parse: deep nesting, a number too long for
#: Python's int, unterminated, not UTF-16-clean escapes
NOT_JSON = st.text(max_size=20) | st.sampled_from(
    [
        "[" * 60_000,
        '{"a":' * 20_000 + "1" + "}" * 20_000,
        "1" * 5_000,
        '{"type": "start", "k": 1' + "0" * 5_000 + "}",
        '{"type": "start"',
        "NaN",
        '"\\ud800"',
        "",
    ]
)
BINARY = st.binary(max_size=64) | st.sampled_from([b"\x00" * 70_000, b'{"type": "start"}'])


def _fields(
    required: dict[str, Any], optional: dict[str, Any], *, junk: bool = True
) -> st.SearchStrategy[Any]:
    """A message with these fields, as text; with ``junk``, any field may be any JSON."""
    if junk:
        required = {k: v | JSON for k, v in required.items()}
        optional = {k: v | JSON for k, v in optional.items()}
    return st.fixed_dictionaries(required, optional=optional).map(json.dumps)


ID = st.text(st.characters(exclude_characters="\x00"), min_size=1, max_size=300) | NASTY
#: ids a real client would send: word characters, and one as long as an id may be
GOOD_ID = st.text("abc-_:0123456789", min_size=1, max_size=12) | st.just("c" * 256)
WORDS = st.lists(st.sampled_from(["peanuts", "Lisbon", "my", "sister", "Ana", "dog"]), min_size=1)


def context_start(junk: bool) -> st.SearchStrategy[str]:
    ids = ID if junk else GOOD_ID
    return _fields(
        {"type": st.just("start"), "conversation_id": ids},
        {
            "user_id": ids,
            "agent_id": ids,
            "k": st.integers(-1, 60) if junk else st.integers(1, 50),
            "budget_ms": (
                st.floats(0, 20_000) | st.sampled_from([math.nan, math.inf])
                if junk
                else st.floats(10, 2000)
            ),
            "exclude_recent": st.integers(-1, 1001) if junk else st.integers(0, 10),
        },
        junk=junk,
    )


def context_turn(junk: bool) -> st.SearchStrategy[str]:
    return _fields(
        {
            "type": st.sampled_from(["turn", "end", "start", "TURN"] if junk else ["turn"]),
            "speaker": TEXT if junk else st.sampled_from(["Maya", "Agent"]),
            "role": st.sampled_from(["user", "agent", "other"] + (["robot"] if junk else [])),
            "text": TEXT if junk else WORDS.map(" ".join),
        },
        {
            "store": st.booleans(),
            "utterance_id": ID if junk else GOOD_ID,
            "started_at": TIMES,
        },
        junk=junk,
    )


FRAME = NOT_JSON | BINARY | JSON.map(json.dumps)


def audio_start(junk: bool) -> st.SearchStrategy[str]:
    return _fields(
        {
            "type": st.sampled_from(["start", "end", "audio"]) if junk else st.just("start"),
            "conversation_id": ID if junk else GOOD_ID,
            "speaker": TEXT if junk else st.sampled_from(["Maya", "Agent"]),
            "sample_rate": st.sampled_from([16000, 16000, 16000.0, 8000, 48000, 0, "16000"]),
        },
        {
            "role": st.sampled_from(["user", "agent", "other", "robot"]),
            "user_id": ID if junk else GOOD_ID,
            "agent_id": ID if junk else GOOD_ID,
            "encoding": st.sampled_from(["pcm_s16le", "pcm_s16le", "mulaw", ""]),
            "channels": st.sampled_from([1, 1, 2, 0, 1.0, "1"]),
            "started_at": TIMES,
        },
        junk=junk,
    )


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
INT32 = st.integers(-(2**31), 2**31 - 1)
INT64 = st.integers(-(2**63), 2**63 - 1)
#: strings for proto fields (no lone surrogates: a proto string is UTF-8); one over the 4 MiB
#: message limit
PROTO_TEXT = st.text(max_size=40) | st.sampled_from(
    ["", " ", "\x00", "a\x00b", "🙂", "x" * 300, "x" * 20_000, "x" * (5 * 1024 * 1024)]
)


#: fields a plausible message leaves out as often as not (a random pair of times is out of
#: order half the time)
SOMETIMES = {"ended_at", "since", "until", "reference_time", "min_seq", "asr_confidence"}
#: plausible values for fields whose type says too little
PLAUSIBLE = {
    "asr_confidence": st.floats(0, 1),
    "budget_ms": st.floats(10, 200),  # a min_seq ahead of the index waits half of it
    "k": st.integers(1, 50),
    "exclude_recent": st.integers(0, 10),
}


def proto_values(field: FieldDescriptor, depth: int, junk: bool) -> st.SearchStrategy[Any]:
    """Values for one field: with ``junk`` anything its type holds, else what a client sends."""
    t = FieldDescriptor
    if field.type == t.TYPE_MESSAGE:
        if field.message_type.full_name == "google.protobuf.Timestamp":
            seconds = INT64 if junk else st.integers(0, 2_000_000_000)
            nanos = INT32 if junk else st.integers(0, 999_999_999)
            return st.fixed_dictionaries({"seconds": seconds, "nanos": nanos})
        return proto_dicts(field.message_type, depth + 1, junk=junk)
    if field.type == t.TYPE_ENUM:
        top = len(field.enum_type.values)
        return st.integers(-1, top + 1) if junk else st.integers(1, top - 1)  # open enums
    if not junk and field.name in PLAUSIBLE:
        return PLAUSIBLE[field.name]
    if junk:
        simple: dict[int, st.SearchStrategy[Any]] = {
            t.TYPE_STRING: PROTO_TEXT,
            t.TYPE_BOOL: st.booleans(),
            t.TYPE_INT32: INT32,
            t.TYPE_INT64: INT64,
            t.TYPE_DOUBLE: st.floats(),
        }
    else:
        simple = {
            t.TYPE_STRING: GOOD_ID | WORDS.map(" ".join),
            t.TYPE_BOOL: st.booleans(),
            t.TYPE_INT32: st.integers(0, 20),
            t.TYPE_INT64: st.integers(0, 1000),
            t.TYPE_DOUBLE: st.floats(10, 2000),
        }
    return simple[field.type]


def is_map(field: FieldDescriptor) -> bool:
    entry = field.message_type
    return entry is not None and entry.GetOptions().map_entry


def proto_dicts(
    descriptor: Descriptor, depth: int = 0, *, junk: bool
) -> st.SearchStrategy[dict[str, Any]]:
    """Values for a message's fields (nested messages up to depth 2): with ``junk`` any
    subset of them, anything each holds; else every field outside a oneof, plausible ones."""
    required: dict[str, st.SearchStrategy[Any]] = {}
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if field.type == FieldDescriptor.TYPE_MESSAGE and depth >= 2 and not is_map(field):
            continue
        values: st.SearchStrategy[Any]
        if is_map(field):
            value = field.message_type.fields_by_name["value"]
            keys = PROTO_TEXT if junk else GOOD_ID
            values = st.dictionaries(keys, proto_values(value, depth, junk), max_size=3)
        elif field.is_repeated:
            values = st.lists(
                proto_values(field, depth, junk), min_size=0 if junk else 1, max_size=3
            )
        else:
            values = proto_values(field, depth, junk)
        plausible = not junk and field.containing_oneof is None and field.name not in SOMETIMES
        (required if plausible else optional)[field.name] = values
    return st.fixed_dictionaries(required, optional=optional)


def fill(message: Message, fields: dict[str, Any]) -> Message:
    """Set the fields on the message (a oneof given two members keeps the last)."""
    for name, value in fields.items():
        field = message.DESCRIPTOR.fields_by_name[name]
        repeated = field.is_repeated
        if is_map(field):
            getattr(message, name).update(value)
        elif repeated and field.type == FieldDescriptor.TYPE_MESSAGE:
            for item in value:
                fill(getattr(message, name).add(), item)
        elif repeated:
            getattr(message, name).extend(value)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            getattr(message, name).SetInParent()
            fill(getattr(message, name), value)
        else:
            setattr(message, name, value)
    return message


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

#: raw bytes that do not parse as the request: garbage, a field cut short, a string (field
#: 1) that is not UTF-8, and a valid message's bytes followed by garbage
NOT_UTF8 = st.binary(min_size=1, max_size=8).filter(lambda b: not _is_utf8(b))
RAW = (
    st.binary(max_size=32)
    | NOT_UTF8.map(lambda b: b"\x0a" + bytes([len(b)]) + b)
    | st.sampled_from([b"\x0a\x05ab", b"\xff\xff\xff\xff", b"\x0a\x02\xc3\x28", b"\x12\x80"])
)


def _is_utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


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
