"""What a client could send, as hypothesis strategies, for ``test_fuzz_streams``.

- WebSocket messages as text: start and turn messages (``junk=False``: what a real client
  sends, with values near the limits; ``junk=True``: any field may be any JSON), any JSON,
  text that is not JSON a server can read, binary frames.
- gRPC request messages of any type, built from its descriptor (plausible values, or anything
  each field's type holds), and raw bytes that do not parse as a message.
"""

from __future__ import annotations

import json
import math
from typing import Any

from google.protobuf.descriptor import (  # type: ignore[import-untyped]  # no stubs
    Descriptor,
    FieldDescriptor,
)
from google.protobuf.message import Message  # type: ignore[import-untyped]  # no stubs
from hypothesis import strategies as st

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


# -- gRPC messages ------------------------------------------------------------------------
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
