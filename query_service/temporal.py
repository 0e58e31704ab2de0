"""Temporal query understanding: the time range a query's own words point at.

"What did I cook last week?" asked on Wednesday 2026-05-13 means 2026-05-04 to 2026-05-11.
`time_range` finds one such phrase and turns it into a half-open range [since, until) of unix
seconds, relative to ``now`` and in ``now``'s time zone (the agent's local day, when the caller
passes a local time). Understood, case-insensitively and as whole words:

=========================================  ==============================================
phrase                                      range
=========================================  ==============================================
today, tonight, this morning/afternoon/     today, from midnight to ``now``
evening
yesterday                                   yesterday, midnight to midnight
this week / last week                       Monday 00:00 to ``now`` / the whole week before
this month / last month                     the 1st to ``now`` / the whole month before
this year / last year                       1 January to ``now`` / the whole year before
N days ago (N = 1-31, or a word to ten)     that day, give or take one day
N weeks ago (N = 1-12, or a word)           that week, give or take half a week
on Monday, last Friday, …                   the most recent such day before today
in May, last May, of May, in May 2025       that month: this year's if it has begun, else
                                            last year's; with a year, that year's
=========================================  ==============================================

The first phrase in this order of precedence wins (an explicit month before a weekday before
"last week"). Anything else ("recently", "the other day", dates written as numbers) is left
alone: the stage only acts on phrases it reads without doubt.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

_NUMBERS = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9, "ten": 10,
}  # fmt: skip
_MONTHS = [
    "january", "february", "march", "april", "may", "june", "july", "august", "september",
    "october", "november", "december",
]  # fmt: skip
_WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_NUM = r"(\d{1,2}|" + "|".join(_NUMBERS) + r")"

_MONTH_RE = re.compile(
    r"\b(in|last|during|back in|of|since)\s+(" + "|".join(_MONTHS) + r")(?:,?\s+(\d{4}))?\b",
    re.I,
)
_WEEKDAY_RE = re.compile(r"\b(on|last)\s+(" + "|".join(_WEEKDAYS) + r")\b", re.I)
_AGO_RE = re.compile(r"\b" + _NUM + r"\s+(day|week)s?\s+ago\b", re.I)
_FIXED_RE = re.compile(
    r"\b(today|tonight|this\s+(?:morning|afternoon|evening)|yesterday|"
    r"(?:this|last)\s+(?:week|month|year))\b",
    re.I,
)


@dataclass(frozen=True, slots=True)
class TimeRange:
    """[since, until) in unix seconds, and the phrase it was read from."""

    since: float
    until: float
    phrase: str

    def contains(self, t: float) -> bool:
        return self.since <= t < self.until


def time_range(query: str, now: datetime) -> TimeRange | None:
    """The range the query's first understood time phrase names, or None.

    ``now`` must carry a time zone; days, weeks and months start at midnight in it.
    """
    if now.tzinfo is None:
        raise ValueError("now needs a time zone")
    try:
        return _find(query, now)
    except (OverflowError, ValueError):
        # the range would start or end outside the calendar (year 1 to 9999): "in May 0000",
        # "last year" asked in year 1; such a phrase names no time that can be searched
        return None


def _find(query: str, now: datetime) -> TimeRange | None:
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if m := _MONTH_RE.search(query):
        month = _MONTHS.index(m.group(2).lower()) + 1
        if m.group(3):
            year = int(m.group(3))
        else:
            year = now.year if month <= now.month else now.year - 1
        start = midnight.replace(year=year, month=month, day=1)
        return _range(start, _next_month(start), m.group(0))
    if m := _WEEKDAY_RE.search(query):
        back = (now.weekday() - _WEEKDAYS.index(m.group(2).lower())) % 7 or 7
        day = midnight - timedelta(days=back)
        return _range(day, day + timedelta(days=1), m.group(0))
    if m := _AGO_RE.search(query):
        n = _number(m.group(1))
        unit = m.group(2).lower()
        if unit == "day" and 1 <= n <= 31:
            day = midnight - timedelta(days=n)
            return _range(day - timedelta(days=1), day + timedelta(days=2), m.group(0))
        if unit == "week" and 1 <= n <= 12:
            point = now - timedelta(weeks=n)
            half = timedelta(days=3.5)
            return _range(point - half, point + half, m.group(0))
        return None
    if m := _FIXED_RE.search(query):
        phrase = " ".join(m.group(1).lower().split())
        week_start = midnight - timedelta(days=now.weekday())
        month_start = midnight.replace(day=1)
        year_start = month_start.replace(month=1)
        if phrase == "yesterday":
            return _range(midnight - timedelta(days=1), midnight, m.group(0))
        if phrase == "last week":
            return _range(week_start - timedelta(weeks=1), week_start, m.group(0))
        if phrase == "this week":
            return _range(week_start, now, m.group(0), to_now=True)
        if phrase == "last month":
            return _range(_previous_month(month_start), month_start, m.group(0))
        if phrase == "this month":
            return _range(month_start, now, m.group(0), to_now=True)
        if phrase == "last year":
            return _range(year_start.replace(year=year_start.year - 1), year_start, m.group(0))
        if phrase == "this year":
            return _range(year_start, now, m.group(0), to_now=True)
        return _range(midnight, now, m.group(0), to_now=True)  # today, this morning, …
    return None


def _range(since: datetime, until: datetime, phrase: str, *, to_now: bool = False) -> TimeRange:
    # a range that runs "to now" includes now itself: a turn stored this second is in it
    return TimeRange(since.timestamp(), until.timestamp() + (1e-6 if to_now else 0.0), phrase)


def _number(token: str) -> int:
    return int(token) if token.isdigit() else _NUMBERS[token.lower()]


def _next_month(d: datetime) -> datetime:
    return d.replace(year=d.year + 1, month=1) if d.month == 12 else d.replace(month=d.month + 1)


def _previous_month(d: datetime) -> datetime:
    return d.replace(year=d.year - 1, month=12) if d.month == 1 else d.replace(month=d.month - 1)
