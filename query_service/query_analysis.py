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
