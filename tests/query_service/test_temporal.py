"""`time_range`: the time a query's words name, on hand-computed dates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from query_service.temporal import time_range

# Wednesday 13 May 2026, 15:00 UTC
NOW = datetime(2026, 5, 13, 15, 0, tzinfo=UTC)


def day(y: int, m: int, d: int, h: int = 0) -> float:
    return datetime(y, m, d, h, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("query", "since", "until"),
    [
        ("what did I cook yesterday?", day(2026, 5, 12), day(2026, 5, 13)),
        ("what did I cook last week?", day(2026, 5, 4), day(2026, 5, 11)),  # Mon to Mon
        ("what did I cook last month", day(2026, 4, 1), day(2026, 5, 1)),
        ("what did I cook last year", day(2025, 1, 1), day(2026, 1, 1)),
        ("what did we say in May", day(2026, 5, 1), day(2026, 6, 1)),  # this year's: begun
        ("what did we say in December", day(2025, 12, 1), day(2026, 1, 1)),  # not yet: last
        ("what did we say back in May 2024", day(2024, 5, 1), day(2024, 6, 1)),
        ("what did we say last January", day(2026, 1, 1), day(2026, 2, 1)),
        ("what did I do last Friday", day(2026, 5, 8), day(2026, 5, 9)),
        ("what did I do on Wednesday", day(2026, 5, 6), day(2026, 5, 7)),  # today is one: last
        ("what did I do 3 days ago", day(2026, 5, 9), day(2026, 5, 12)),  # the 10th, ±1 day
        ("what did I do two weeks ago", day(2026, 4, 26, 3), day(2026, 5, 3, 3)),  # ±3.5 days
    ],
)
def test_closed_ranges(query: str, since: float, until: float) -> None:
    r = time_range(query, NOW)
    assert r is not None
    assert (r.since, r.until) == (since, until)


@pytest.mark.parametrize(
    ("query", "since"),
    [
        ("anything today", day(2026, 5, 13)),
        ("what did I eat this morning", day(2026, 5, 13)),
        ("plans this week", day(2026, 5, 11)),
        ("plans this month", day(2026, 5, 1)),
        ("plans this year", day(2026, 1, 1)),
    ],
)
def test_ranges_up_to_now_include_now(query: str, since: float) -> None:
    r = time_range(query, NOW)
    assert r is not None and r.since == since
    assert r.contains(NOW.timestamp()) and not r.contains(NOW.timestamp() + 1)


@pytest.mark.parametrize(
    "query",
    [
        "what do we know about the trip",
        "recently, what did she say",  # fuzzy: left alone
        "I may go to Paris",  # "may" is not the month here
        "what happened 40 days ago",  # past the bounds it reads
        "the meeting on 5/12",  # numeric dates: not read
    ],
)
def test_no_range(query: str) -> None:
    assert time_range(query, NOW) is None


def test_precedence_and_the_phrase() -> None:
    r = time_range("what did I say in May about last week", NOW)
    assert r is not None and r.phrase == "in May" and r.since == day(2026, 5, 1)


def test_days_start_at_midnight_in_the_callers_zone() -> None:
    pacific = timezone(timedelta(hours=-7))
    # 13 May 02:00 UTC is still 12 May in UTC-7: "yesterday" there is 11 May, local midnight
    now = datetime(2026, 5, 13, 2, 0, tzinfo=UTC).astimezone(pacific)
    r = time_range("yesterday", now)
    assert r is not None
    assert r.since == datetime(2026, 5, 11, tzinfo=pacific).timestamp()
    assert r.until == datetime(2026, 5, 12, tzinfo=pacific).timestamp()


def test_now_needs_a_time_zone() -> None:
    with pytest.raises(ValueError, match="time zone"):
        time_range("yesterday", datetime(2026, 5, 13))
