"""`RecordTable`: the shard's utterance records in columns, not one Python object each.

Each record is a row: numbers in numpy columns, the repeated strings (tenant, user,
conversation, speaker) as codes into small dictionaries, and the free text (utterance id,
text) in one UTF-8 byte blob per field with row offsets. A `DocRecord` is built only for a row
a search returns. Rows are appended; replacing or deleting a record leaves its row dead (the
caller keeps the uid → row map), like the vector index's partitions.

``columns(rows)`` copies the given rows out as `RecordColumns` (plain arrays and a JSON-able
dictionary list: what a snapshot writes), and ``RecordTable.from_columns`` takes them back.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Generic, TypeVar

import numpy as np
import numpy.typing as npt

from indexer.models import Role
from indexer.records import DocRecord

ROLES = (Role.USER, Role.AGENT, Role.OTHER)
ROLE_CODE = {role: i for i, role in enumerate(ROLES)}
#: ``utcoffset`` of a naive ``started_at`` (no offset): its micros count from a naive epoch
NAIVE = np.iinfo(np.int32).min
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)
_CHUNK = 65_536
#: records kept once built (about 0.4 KB each)
BUILT_RECORDS = 16_384

#: numeric columns: name → dtype (one value per row)
NUMERIC = {
    "uid": np.int64,
    "tenant": np.int32,
    "user": np.int32,
    "conv": np.int32,
    "speaker": np.int32,
    "role": np.int8,
    "turn": np.int64,
    "started": np.float64,  # started_at.timestamp(), as the indexes see it
    "micros": np.int64,  # started_at in microseconds since the epoch (its own clock if naive)
    "utcoffset": np.int32,  # started_at's UTC offset in seconds, or NAIVE
    "question": np.bool_,
}
BLOBS = ("id", "text")
_ROW = np.dtype(list(NUMERIC.items()))
_UID, _TURN, _STARTED = (list(NUMERIC).index(f) for f in ("uid", "turn", "started"))


def _micros(dt: datetime) -> tuple[int, int]:
    off = dt.utcoffset()
    if off is None:
        return (dt - _NAIVE_EPOCH) // timedelta(microseconds=1), int(NAIVE)
    return (dt - _EPOCH) // timedelta(microseconds=1), int(off.total_seconds())


@functools.lru_cache(maxsize=256)
def _zone_epoch(offset: int) -> datetime:
    """1970-01-01 00:00 on the wall clock of a fixed UTC offset."""
    return datetime(1970, 1, 1, tzinfo=timezone(timedelta(seconds=offset)))


def _datetime(micros: int, offset: int) -> datetime:
    if offset == NAIVE:
        return _NAIVE_EPOCH + timedelta(microseconds=micros)
    # the wall clock is the UTC instant plus the offset
    return _zone_epoch(offset) + timedelta(microseconds=micros + 1_000_000 * offset)


@dataclass(frozen=True, slots=True)
class RecordColumns:
    """Records as arrays: ``numeric[name]`` per row, ``blobs[name]`` = (bytes, offsets n + 1),
    and the string dictionaries the code columns index (conversations are (tenant, id))."""

    numeric: dict[str, npt.NDArray[np.generic]]
    blobs: dict[str, tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]]
    tenants: list[str]
    users: list[str | None]
    convs: list[tuple[int, str]]
    speakers: list[str]

    def __len__(self) -> int:
        return int(self.numeric["uid"].shape[0])


_T = TypeVar("_T")


class _Dictionary(Generic[_T]):
    """value → code, and back."""

    def __init__(self, values: Sequence[_T] = ()) -> None:
        self.values: list[_T] = list(values)
        self._codes: dict[_T, int] = {v: i for i, v in enumerate(self.values)}

    def code(self, value: _T) -> int:
        code = self._codes.get(value)
        if code is None:
            code = self._codes[value] = len(self.values)
            self.values.append(value)
        return code

    def find(self, value: _T) -> int | None:
        return self._codes.get(value)


class RecordTable:
    """Append-only rows of records. Not thread-safe: the shard's lock guards it."""

    def __init__(self, capacity: int = 1024) -> None:
        self.n = 0
        # one structured row per record: a row's fields are read with one ``.item()``
        self._data: npt.NDArray[np.void] = np.zeros(capacity, _ROW)
        self._blob = {name: np.zeros(16 * capacity, np.uint8) for name in BLOBS}
        self._blob_end = dict.fromkeys(BLOBS, 0)
        self._off = {name: np.zeros(capacity + 1, np.int64) for name in BLOBS}
        self._built: dict[int, DocRecord] = {}
        self.tenants = _Dictionary[str]()
        self.users = _Dictionary[str | None]()
        self.convs = _Dictionary[tuple[int, str]]()
        self.speakers = _Dictionary[str]()

    def col(self, name: str) -> npt.NDArray[np.generic]:
        """The first ``n`` values of a numeric column (a view)."""
        return self._data[name][: self.n]  # a view of one field

    # -- writes ---------------------------------------------------------------------------

    def append(self, rec: DocRecord, question: bool) -> int:
        """Add a row for ``rec``; return its row number."""
        if self.n == self._data.shape[0]:
            self._grow(2 * self.n)
        row = self.n
        tenant = self.tenants.code(rec.tenant)
        micros, offset = _micros(rec.started_at)
        self._data[row] = (  # in NUMERIC's order
            rec.uid,
            tenant,
            self.users.code(rec.user_id),
            self.convs.code((tenant, rec.conversation_id)),
            self.speakers.code(rec.speaker),
            ROLE_CODE[rec.role],
            rec.turn,
            rec.started_at.timestamp(),
            micros,
            offset,
            question,
        )
        for name, text in (("id", rec.id), ("text", rec.text)):
            self._put(name, row, text.encode("utf-8"))
        self.n += 1
        return row

    def _put(self, name: str, row: int, data: bytes) -> None:
        end = self._blob_end[name]
        blob = self._blob[name]
        if end + len(data) > blob.shape[0]:
            grown = np.zeros(max(2 * blob.shape[0], end + len(data)), np.uint8)
            grown[:end] = blob[:end]
            self._blob[name] = blob = grown
        blob[end : end + len(data)] = np.frombuffer(data, np.uint8)
        self._blob_end[name] = end + len(data)
        self._off[name][row] = end
        self._off[name][row + 1] = end + len(data)

    def _grow(self, capacity: int) -> None:
        capacity = max(capacity, 1024)
        data = np.zeros(capacity, _ROW)
        data[: self.n] = self._data[: self.n]
        self._data = data
        for name, old_off in self._off.items():
            new_off = np.zeros(capacity + 1, np.int64)
            new_off[: self.n + 1] = old_off[: self.n + 1]
            self._off[name] = new_off

    # -- reads ----------------------------------------------------------------------------

    def text(self, row: int) -> str:
        return self._str("text", row)

    def _str(self, name: str, row: int) -> str:
        a, b = self._off[name][row : row + 2].tolist()
        return self._blob[name][a:b].tobytes().decode("utf-8")

    def order_key(self, row: int) -> tuple[float, int, int]:
        """(started_at timestamp, turn, uid): a conversation's turn order."""
        v = self._data[row].item()
        return (v[_STARTED], v[_TURN], v[_UID])

    def record(self, row: int) -> DocRecord:
        """The row as a `DocRecord`; the last few thousand built are kept (a row never
        changes, so a kept one is always right), since a search reads the same hits and
        neighbouring turns again and again."""
        rec = self._built.get(row)
        if rec is None:
            if len(self._built) >= BUILT_RECORDS:
                self._built.clear()
            rec = self._built[row] = self._record(row)
        return rec

    def records(self, rows: Sequence[int | None]) -> list[DocRecord | None]:
        """`record` of each row (None for None)."""
        built, record = self._built, self.record
        return [None if r is None else built.get(r) or record(r) for r in rows]

    def _record(self, row: int) -> DocRecord:
        uid, _, user, conv, speaker, role, turn, _, micros, offset, _ = self._data[row].item()
        tenant, conversation_id = self.convs.values[conv]
        return DocRecord(
            uid=uid,
            tenant=self.tenants.values[tenant],
            id=self._str("id", row),
            conversation_id=conversation_id,
            user_id=self.users.values[user],
            turn=turn,
            speaker=self.speakers.values[speaker],
            role=ROLES[role],
            text=self.text(row),
            started_at=_datetime(micros, offset),
        )

    # -- columns in and out -----------------------------------------------------------------

    def columns(self, rows: npt.NDArray[np.int64]) -> RecordColumns:
        """A copy of ``rows`` (in that order) as plain arrays."""
        picked = self._data[rows]
        numeric = {name: np.ascontiguousarray(picked[name]) for name in NUMERIC}
        blobs = {name: _gather(self._blob[name], self._off[name], rows) for name in BLOBS}
        return RecordColumns(
            numeric=numeric,
            blobs=blobs,
            tenants=list(self.tenants.values),
            users=list(self.users.values),
            convs=list(self.convs.values),
            speakers=list(self.speakers.values),
        )

    @classmethod
    def from_columns(cls, cols: RecordColumns) -> RecordTable:
        """A table whose rows are ``cols`` (the blobs are adopted, not copied); ValueError
        if they are inconsistent (lengths, offsets, codes out of range)."""
        n = len(cols)
        _check(cols)
        table = cls(capacity=0)
        table.n = n
        table._data = np.empty(n, _ROW)
        for name in NUMERIC:
            table._data[name] = cols.numeric[name]
        for name in BLOBS:
            blob, off = cols.blobs[name]
            table._blob[name] = blob
            table._off[name] = off
            table._blob_end[name] = int(off[n])
        table.tenants = _Dictionary(cols.tenants)
        table.users = _Dictionary(cols.users)
        table.convs = _Dictionary([(int(t), str(c)) for t, c in cols.convs])
        table.speakers = _Dictionary(cols.speakers)
        return table


def columns_of(records: Sequence[DocRecord], questions: Sequence[bool]) -> RecordColumns:
    """``records`` as columns, in one pass per column (a bulk load, not a row at a time)."""
    n = len(records)
    tenants, users = _Dictionary[str](), _Dictionary[str | None]()
    convs, speakers = _Dictionary[tuple[int, str]](), _Dictionary[str]()
    tenant = np.fromiter((tenants.code(r.tenant) for r in records), np.int32, n)
    clock = np.array([_micros(r.started_at) for r in records], np.int64).reshape(n, 2)
    numeric: dict[str, npt.NDArray[np.generic]] = {
        "uid": np.fromiter((r.uid for r in records), np.int64, n),
        "tenant": tenant,
        "user": np.fromiter((users.code(r.user_id) for r in records), np.int32, n),
        "conv": np.fromiter(
            (convs.code((int(t), r.conversation_id)) for t, r in zip(tenant, records, strict=True)),
            np.int32,
            n,
        ),
        "speaker": np.fromiter((speakers.code(r.speaker) for r in records), np.int32, n),
        "role": np.fromiter((ROLE_CODE[r.role] for r in records), np.int8, n),
        "turn": np.fromiter((r.turn for r in records), np.int64, n),
        "started": np.fromiter((r.started_at.timestamp() for r in records), np.float64, n),
        "micros": np.ascontiguousarray(clock[:, 0]),
        "utcoffset": clock[:, 1].astype(np.int32),
        "question": np.fromiter(questions, np.bool_, n),
    }
    blobs = {
        "id": _pack([r.id for r in records]),
        "text": _pack([r.text for r in records]),
    }
    return RecordColumns(
        numeric=numeric,
        blobs=blobs,
        tenants=tenants.values,
        users=users.values,
        convs=convs.values,
        speakers=speakers.values,
    )


def _pack(texts: Sequence[str]) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    encoded = [t.encode("utf-8") for t in texts]
    off = np.zeros(len(encoded) + 1, np.int64)
    np.cumsum(np.fromiter(map(len, encoded), np.int64, len(encoded)), out=off[1:])
    return np.frombuffer(b"".join(encoded), np.uint8).copy(), off


def _check(cols: RecordColumns) -> None:
    n = len(cols)
    if set(cols.numeric) != set(NUMERIC) or set(cols.blobs) != set(BLOBS):
        raise ValueError("record columns are not the expected ones")
    for name, dtype in NUMERIC.items():
        col = cols.numeric[name]
        if col.shape != (n,) or col.dtype != np.dtype(dtype):
            raise ValueError(f"record column {name} is {col.dtype} {col.shape}, not ({n},)")
    for name in BLOBS:
        blob, off = cols.blobs[name]
        if off.shape != (n + 1,) or off[0] != 0 or np.any(np.diff(off) < 0):
            raise ValueError(f"offsets of {name} are malformed")
        if int(off[n]) != blob.shape[0]:
            raise ValueError(f"blob {name} has {blob.shape[0]} bytes, offsets say {off[n]}")
    for name, size in (
        ("tenant", len(cols.tenants)),
        ("user", len(cols.users)),
        ("conv", len(cols.convs)),
        ("speaker", len(cols.speakers)),
        ("role", len(ROLES)),
    ):
        col = cols.numeric[name]
        if n and (int(col.min()) < 0 or int(col.max()) >= size):
            raise ValueError(f"record column {name} has codes outside its dictionary")
    if any(not 0 <= t < len(cols.tenants) for t, _ in cols.convs):
        raise ValueError("a conversation names an unknown tenant")


def _gather(
    blob: npt.NDArray[np.uint8], off: npt.NDArray[np.int64], rows: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """The byte strings of ``rows``, packed in that order, and their offsets (chunked)."""
    starts, ends = off[rows], off[rows + 1]
    lengths = ends - starts
    new_off = np.zeros(len(rows) + 1, np.int64)
    np.cumsum(lengths, out=new_off[1:])
    out = np.empty(int(new_off[-1]), np.uint8)
    for a in range(0, len(rows), _CHUNK):
        b = min(a + _CHUNK, len(rows))
        lo, hi = int(new_off[a]), int(new_off[b])
        if hi == lo:
            continue
        shift = np.repeat(starts[a:b] - new_off[a:b], lengths[a:b])
        out[lo:hi] = blob[np.arange(lo, hi) + shift]
    return out, new_off
