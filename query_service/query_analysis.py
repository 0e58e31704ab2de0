"""What a query says about its own scope (pure functions over the query text)."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

_WORD = re.compile(r"\w+")
#: names longer than this many words are never matched (no n-grams that long are built)
_MAX_NAME_WORDS = 6


def named_speakers(query: str, speakers: Iterable[str]) -> tuple[str, ...]:
    """The speakers whose whole name occurs in ``query`` as words, case-insensitively, sorted.

    Names and query are compared as sequences of word characters (``\\w+``): "What does
    Melanie's family do?" names "Melanie" (a possessive ends a word), "Mel" does not name
    "Melanie", a two-word name needs both words in order, and "O'Brien" is the words "o",
    "brien". A name without a word character never matches. The cost is one set lookup per
    speaker, so a tenant-wide scope with thousands of speakers stays cheap.
    """
    words = _WORD.findall(query.lower())
    present = {
        tuple(words[i : i + n])
        for n in range(1, _MAX_NAME_WORDS + 1)
        for i in range(len(words) - n + 1)
    }
    named = {s for s in speakers if _name_words(s) in present}
    return tuple(sorted(named))


@functools.lru_cache(maxsize=65_536)
def _name_words(speaker: str) -> tuple[str, ...]:
    return tuple(_WORD.findall(speaker.lower()))


def first_person(query: str, speaker: str) -> str:
    """``query`` as ``speaker`` would say it: their name becomes "I", a possessive "my".

    "What does Melanie's family do on hikes?" becomes "What does my family do on hikes?".
    Used when the dense search is already narrowed to that speaker's turns, which speak of
    them in the first person, while the turns that say their name are other people's.
    """
    words = _name_words(speaker)
    if not words:
        return query
    # the name's words with anything but word characters between them, as `named_speakers`
    name = r"(?<!\w)" + r"\W+".join(re.escape(w) for w in words)
    query = re.sub(name + r"['’]s(?!\w)", "my", query, flags=re.IGNORECASE)
    return re.sub(name + r"(?!\w)", "I", query, flags=re.IGNORECASE)
