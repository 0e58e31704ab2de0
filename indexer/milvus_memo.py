"""What a Milvus replica has read, kept while the tier's ``seq`` stands still.

One hybrid search asks the tier for the same things several times: the candidates' records
(neighbour spreading, the time prior, hydration), their question flags, the scope's speakers
(three times), and the turns around the best hits twice (spreading, then the served context).
Each ask is a round trip to Milvus, 8-16 ms on the bundled server at 100k utterances. The
searches return each candidate's turn key and question flag with its id (``light``), and one
read of the turns around the best hits (``span``) answers both neighbour asks and hydration.

The memo belongs to one ``seq`` (the feed's cursor, refreshed about every ``SEQ_TTL_S``): when it
moves, every entry is dropped, so a row deleted or edited at that ``seq`` is never served
from here to a search that waited for it. Between two moves it is as fresh as the reads that
filled it, which raced the same writes a read without the memo races.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass

from indexer.records import DocRecord

#: entries of each kind kept before the memo starts over (a bound on a replica's memory)
LIMIT = 50_000


@dataclass(frozen=True, slots=True)
class Row:
    record: DocRecord
    is_question: bool
    #: ``milvus_keys.conv_turn`` of the record (-1: its turn is outside the key's range)
    ct: int


@dataclass(frozen=True, slots=True)
class Span:
    """Every live row whose ``ct`` lies in ``[lo, hi]``, as read at the memo's ``seq``."""

    lo: int
    hi: int
    rows: tuple[Row, ...]


class ReadMemo:
    """Thread-safe: searches on many threads read and fill it."""

    def __init__(self, limit: int = LIMIT) -> None:
        self._limit = limit
        self._seq: int | None = None
        self._rows: dict[int, Row] = {}
        self._light: dict[int, tuple[int, bool]] = {}
        self._spans: dict[int, list[Span]] = {}
        self._span_rows = 0
        self._speakers: dict[tuple[str, str], list[str]] = {}
        self._lock = threading.Lock()

    def at(self, seq: int) -> None:
        """Move the memo to ``seq``: anything read before another ``seq`` is dropped."""
        with self._lock:
            if seq != self._seq:
                self._seq = seq
                self._clear()

    def clear(self) -> None:
        with self._lock:
            self._clear()

    def _clear(self) -> None:
        self._rows = {}
        self._light = {}
        self._spans = {}
        self._span_rows = 0
        self._speakers = {}

    # -- rows -------------------------------------------------------------------------------

    def rows(self, uids: Iterable[int]) -> tuple[dict[int, Row], list[int]]:
        """The rows held of ``uids``, and the uids not held (in order, without repeats)."""
        held = self._rows
        found: dict[int, Row] = {}
        missing: dict[int, None] = {}  # ordered, without repeats
        for uid in uids:
            row = held.get(uid)
            if row is not None:
                found[uid] = row
            else:
                missing[uid] = None
        return found, list(missing)

    def put_rows(self, rows: Iterable[Row]) -> None:
        with self._lock:
            if len(self._rows) > self._limit:
                self._rows = {}
            for row in rows:
                self._rows[row.record.uid] = row

    # -- what a search returns with each id -------------------------------------------------

    def light(self, uid: int) -> tuple[int, bool] | None:
        """``(ct, is_question)`` of ``uid``, from a search's hits or a row."""
        row = self._rows.get(uid)
        if row is not None:
            return row.ct, row.is_question
        return self._light.get(uid)

    def put_light(self, items: Iterable[tuple[int, int, bool]]) -> None:
        """``(uid, ct, is_question)`` triples."""
        with self._lock:
            if len(self._light) > self._limit:
                self._light = {}
            for uid, ct, is_question in items:
                self._light[uid] = (ct, is_question)

    # -- turns of a conversation ------------------------------------------------------------

    def span(self, lo: int, hi: int, *, bits: int) -> list[Row] | None:
        """The live rows with ``ct`` in ``[lo, hi]`` if a span read covers it, else None.
        ``bits``: ``milvus_keys.TURN_BITS`` (spans are filed by conversation hash)."""
        for s in self._spans.get(lo >> bits, ()):
            if s.lo <= lo and hi <= s.hi:
                return [r for r in s.rows if lo <= r.ct <= hi]
        return None

    def put_span(self, lo: int, hi: int, rows: Iterable[Row], *, bits: int) -> None:
        kept = tuple(r for r in rows if lo <= r.ct <= hi)
        with self._lock:
            if self._span_rows > self._limit:
                self._spans, self._span_rows = {}, 0
            self._spans.setdefault(lo >> bits, []).append(Span(lo, hi, kept))
            self._span_rows += len(kept) + 1

    # -- speakers ---------------------------------------------------------------------------

    def speakers(self, tenant: str, scope: str) -> list[str] | None:
        return self._speakers.get((tenant, scope))

    def put_speakers(self, tenant: str, scope: str, speakers: list[str]) -> None:
        with self._lock:
            if len(self._speakers) > self._limit:
                self._speakers = {}
            self._speakers[(tenant, scope)] = speakers
