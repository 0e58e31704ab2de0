"""What a query says about its own scope (pure functions over the query text)."""

from __future__ import annotations

import re
from collections.abc import Iterable


def named_speakers(query: str, speakers: Iterable[str]) -> tuple[str, ...]:
    """The speakers whose whole name occurs in ``query`` as words, case-insensitively, sorted.

    "What does Melanie's family do?" names "Melanie" (a possessive ends a word); "Mel" does
    not name "Melanie", and a two-word name needs both words, in order. Blank names never
    match.
    """
    named = []
    for speaker in set(speakers):
        words = speaker.split()
        if not words:
            continue
        pattern = r"(?<!\w)" + r"\s+".join(re.escape(w) for w in words) + r"(?!\w)"
        if re.search(pattern, query, flags=re.IGNORECASE):
            named.append(speaker)
    return tuple(sorted(named))


def first_person(query: str, speaker: str) -> str:
    """``query`` as ``speaker`` would say it: their name becomes "I", a possessive "my".

    "What does Melanie's family do on hikes?" becomes "What does my family do on hikes?".
    Used when the dense search is already narrowed to that speaker's turns, which speak of
    them in the first person, while the turns that say their name are other people's.
    """
    words = speaker.split()
    if not words:
        return query
    name = r"(?<!\w)" + r"\s+".join(re.escape(w) for w in words)
    query = re.sub(name + r"['’]s(?!\w)", "my", query, flags=re.IGNORECASE)
    return re.sub(name + r"(?!\w)", "I", query, flags=re.IGNORECASE)
