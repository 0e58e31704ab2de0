"""The Milvus tier's pure parts: the turn key and the read memo (no server)."""

from __future__ import annotations

from datetime import UTC, datetime

from indexer.milvus_keys import TURN_BITS, conv_turn
from indexer.milvus_memo import ReadMemo, Row
from indexer.models import Role
from indexer.records import DocRecord


def rec(uid: int, text: str = "hi") -> DocRecord:
    return DocRecord(
        uid=uid,
        tenant="t",
        id=f"u{uid}",
        conversation_id="c",
        user_id=None,
        turn=uid,
        speaker="Maya",
        role=Role.USER,
        text=text,
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def test_conv_turn_keys_a_conversation_and_its_turns_in_order() -> None:
    base = conv_turn("t1", "c1", 0)
    assert base >= 0 and base % (1 << TURN_BITS) == 0
    assert [conv_turn("t1", "c1", t) - base for t in (0, 1, 7, 2**TURN_BITS - 1)] == [
        0,
        1,
        7,
        2**TURN_BITS - 1,
    ]
    assert conv_turn("t1", "c1", 3) == conv_turn("t1", "c1", 3)
    assert conv_turn("t1", "c2", 3) != conv_turn("t1", "c1", 3)
    assert conv_turn("t2", "c1", 3) != conv_turn("t1", "c1", 3)
    assert conv_turn("t1", "c1", 2**63) == -1 and conv_turn("t1", "c1", -1) == -1
    assert conv_turn("t1", "c1", 2**TURN_BITS) == -1
    assert conv_turn("t1", "😀\ud800", 1) >= 0  # any string, even a lone surrogate
    assert max(conv_turn(str(i), "c", 2**TURN_BITS - 1) for i in range(500)) < 2**63


def test_the_memo_keeps_what_it_read_only_for_one_seq() -> None:
    memo = ReadMemo()
    memo.at(5)
    memo.put_rows([Row(rec(1), False, 101), Row(rec(2), True, 102)])
    memo.put_light([(7, 107, True)])
    memo.put_span(100, 105, [Row(rec(1), False, 101), Row(rec(9), False, 109)], bits=4)
    memo.put_speakers("t", "t", ["Maya"])
    found, missing = memo.rows([2, 3, 1, 3])
    assert set(found) == {1, 2} and found[2].is_question and missing == [3]
    memo.at(5)  # the same seq: kept
    assert memo.light(7) == (107, True) and memo.light(2) == (102, True)
    assert memo.light(8) is None
    span = memo.span(101, 104, bits=4)  # covered by [100, 105]: the rows inside only
    assert span is not None and [r.record.uid for r in span] == [1]
    assert memo.span(99, 104, bits=4) is None and memo.span(101, 106, bits=4) is None
    assert memo.speakers("t", "t") == ["Maya"]
    memo.at(6)  # the feed moved on: nothing read before is served
    assert memo.rows([1, 2]) == ({}, [1, 2])
    assert memo.light(7) is None and memo.span(101, 104, bits=4) is None
    assert memo.speakers("t", "t") is None


def test_the_memo_is_bounded() -> None:
    memo = ReadMemo(limit=3)
    memo.at(1)
    for uid in range(10):
        memo.put_rows([Row(rec(uid), False, uid)])
        memo.put_light([(uid, uid, False)])
        memo.put_span(uid * 16, uid * 16 + 3, [Row(rec(uid), False, uid * 16)], bits=4)
    found, _ = memo.rows(range(10))
    assert 0 < len(found) <= 4 and 9 in found
    assert sum(memo.light(u) is not None for u in range(10)) <= 4
    assert sum(memo.span(u * 16, u * 16 + 3, bits=4) is not None for u in range(10)) <= 4
