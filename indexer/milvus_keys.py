"""Milvus filter expressions, built from ``Filters`` without injection (pure functions).

Milvus 2.5's expression parser cannot match every string a user may send: a literal with a
newline in it matches nothing, escaped or not, and milvus-lite 2.5.1 has no expression
templates (``filter_params``). So each filter field is stored twice: as given (what a record
shows) and as a *key*, which is the string itself when it is plain, and otherwise ``~`` and
the URL-safe base64 of its UTF-8 bytes. A key never holds a quote (single or double: an
upsert of a primary key with a single quote in it fails inside milvus-lite), a backslash or a
control character, so quoting it is safe; and two strings have one key only if they are
equal (a plain key never starts with ``~``).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable

from indexer.models import Filters

#: bits of ``conv_turn`` that hold the turn number; the rest hold the conversation's hash
TURN_BITS = 20
_HASH_BITS = 63 - TURN_BITS

_PLAIN = re.compile(r"[^\x00-\x1f\x7f\"'\\~][^\x00-\x1f\x7f\"'\\]*")


def key(value: str) -> str:
    """The filter key of ``value`` (see the module docstring); injective."""
    if _PLAIN.fullmatch(value):
        return value
    return "~" + base64.urlsafe_b64encode(value.encode("utf-8", "surrogatepass")).decode("ascii")


def quoted(value: str) -> str:
    """``value``'s key as a Milvus string literal."""
    return '"' + key(value) + '"'


def one_of(field: str, values: Iterable[str]) -> str:
    """``field in [...]`` over the keys of ``values``."""
    return f"{field} in [{', '.join(quoted(v) for v in values)}]"


def ints_in(field: str, values: Iterable[int]) -> str:
    return f"{field} in [{', '.join(str(int(v)) for v in values)}]"


def filter_expr(filters: Filters) -> str:
    """The expression that admits exactly what ``filters.admits`` admits."""
    parts = [f"tenant_k == {quoted(filters.tenant)}"]
    if filters.user_id is not None:
        parts.append(f"user_k == {quoted(filters.user_id)}")
    if filters.conversation_ids:
        parts.append(one_of("conv_k", filters.conversation_ids))
    if filters.speakers:
        parts.append(one_of("speaker_k", filters.speakers))
    if filters.roles:
        parts.append(one_of("role", filters.roles))
    if filters.since is not None:
        parts.append(f"started_at >= {float(filters.since)!r}")
    if filters.until is not None:
        parts.append(f"started_at <= {float(filters.until)!r}")
    return " and ".join(parts)


def named_expr(expr: str, speakers: Iterable[str]) -> str:
    """``expr``, narrowed to the turns of ``speakers``."""
    return f"{expr} and {one_of('speaker_k', sorted(speakers))}"


def user_key(user_id: str | None) -> str:
    """The key stored for a conversation's user (``""`` for none: no user id is empty)."""
    return "" if user_id is None else key(user_id)


def conv_turn(tenant: str, conversation_id: str, turn: int) -> int:
    """One int64 naming a turn of a conversation: a 43-bit hash of the conversation, then the
    turn number, so the turns around a hit are one ``ct in [...]`` lookup on an indexed
    integer, not a string match and a range per hit. -1 for a turn number outside
    ``[0, 2**TURN_BITS)`` (looked up by range instead). Two conversations may share a hash:
    readers check the conversation of every row they get back."""
    if not 0 <= turn < 1 << TURN_BITS:
        return -1
    raw = f"{tenant}\x00{conversation_id}".encode("utf-8", "surrogatepass")
    digest = int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "big")
    return ((digest >> (64 - _HASH_BITS)) << TURN_BITS) | turn
