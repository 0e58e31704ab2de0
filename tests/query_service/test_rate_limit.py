"""Per-tenant token buckets, unit level: a fake clock and hand-computed values."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indexer.errors import InvalidInput
from query_service.errors import Overloaded
from query_service.rate_limit import Rate, RateLimiter, RateLimits, TokenBucket


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def limiter(search: Rate | None = None, ingest: Rate | None = None) -> tuple[RateLimiter, Clock]:
    clock = Clock()
    return RateLimiter(RateLimits(search=search, ingest=ingest), clock=clock), clock


def test_a_bucket_spends_refills_at_its_rate_and_never_holds_more_than_its_burst() -> None:
    b = TokenBucket(Rate(per_s=2, burst=4), now=0.0)
    assert b.take(4, 0.0) == 0.0  # a full bucket: the whole burst at once
    assert b.take(1, 0.0) == 0.5  # empty: one token comes in 1 / 2 s
    assert b.tokens(0.0) == 0.0  # a refused take spends nothing
    assert b.take(1, 0.25) == 0.25  # 0.5 token by now: half a token short, 0.25 s
    assert b.take(1, 0.5) == 0.0  # exactly one by now
    assert b.tokens(0.5) == 0.0
    assert b.tokens(10.0) == 4.0  # 19 s of refill, capped at the burst
    assert b.take(3, 10.0) == 0.0
    assert b.take(3, 10.0) == 1.0  # 1 held, 2 short at 2/s
    b.give_back(3, 10.0)
    assert b.tokens(10.0) == 4.0  # given back, never over the burst


def test_the_wait_is_rounded_up_to_the_millisecond_and_is_enough() -> None:
    b = TokenBucket(Rate(per_s=3, burst=1), now=0.0)
    assert b.take(1, 0.0) == 0.0
    wait = b.take(1, 0.0)
    assert wait == 0.334  # 1/3 s, rounded up
    assert b.take(1, 0.333) == 0.001  # one ms before it is still short
    assert b.take(1, wait) == 0.0  # at the hint, it passes


def test_limiter_refuses_with_retry_after_and_counts_by_cost() -> None:
    rates, clock = limiter(ingest=Rate(per_s=10, burst=100))
    rates.take("ingest", "acme", 60)
    rates.check("ingest", "acme")  # 40 left: a token is there
    with pytest.raises(Overloaded) as err:
        rates.take("ingest", "acme", 50)  # 10 short at 10/s
    assert err.value.reason == "rate_limit"
    assert err.value.retry_after_s == 1.0
    assert "10 utterances/s" in str(err.value)
    rates.take("ingest", "acme", 40)
    with pytest.raises(Overloaded) as early:
        rates.check("ingest", "acme")  # none left: refused before the cost is known
    assert early.value.retry_after_s == 0.1
    clock.t += 5.0
    assert rates.tokens("ingest", "acme") == 50.0
    rates.take("ingest", "acme", 50)


def test_one_tenant_over_its_rate_never_touches_another_or_another_class() -> None:
    rates, _ = limiter(search=Rate(per_s=1, burst=2), ingest=Rate(per_s=1, burst=5))
    rates.take("search", "flood")
    rates.take("search", "flood")
    for _ in range(3):
        with pytest.raises(Overloaded):
            rates.take("search", "flood")
    rates.take("search", "quiet")
    rates.take("search", "quiet")
    rates.take("ingest", "flood", 5)  # its ingest has a bucket of its own
    assert rates.tokens("search", "quiet") == 0.0
    assert rates.tokens("search", "new") == 2.0


def test_a_class_without_a_rate_is_never_limited_and_give_back_refunds() -> None:
    rates, _ = limiter(search=Rate(per_s=1, burst=1))
    for _ in range(1000):
        rates.take("ingest", "t", 1000)
    assert rates.tokens("ingest", "t") == float("inf")
    rates.take("search", "t")
    rates.give_back("search", "t")  # admission refused it: the token comes back
    rates.take("search", "t")
    rates.give_back("ingest", "t", 5)  # nothing to give back to: no error


def test_a_cost_over_the_burst_is_invalid_input_not_a_retry() -> None:
    rates, _ = limiter(ingest=Rate(per_s=100, burst=10))
    with pytest.raises(InvalidInput, match="burst of 10"):
        rates.take("ingest", "t", 11)
    rates.take("ingest", "t", 10)


def test_full_buckets_are_forgotten_when_there_are_many(monkeypatch) -> None:
    monkeypatch.setattr("query_service.rate_limit._PRUNE_AT", 10)
    rates, clock = limiter(search=Rate(per_s=1, burst=1))
    for n in range(10):
        rates.take("search", f"t{n}")
    clock.t += 2.0  # every bucket is full again
    rates.take("search", "busy")
    assert len(rates._buckets) == 1
    with pytest.raises(Overloaded):
        rates.take("search", "busy")  # pruning never forgets a spent bucket


def test_rates_check_their_arguments() -> None:
    with pytest.raises(ValueError, match="per_s"):
        Rate(per_s=0, burst=1)
    with pytest.raises(ValueError, match="burst"):
        Rate(per_s=1, burst=0.5)


@settings(max_examples=300, deadline=None)
@given(
    per_s=st.floats(min_value=0.1, max_value=100),
    burst=st.integers(min_value=1, max_value=50),
    steps=st.lists(
        st.tuples(st.floats(min_value=0, max_value=2), st.integers(min_value=1, max_value=50)),
        min_size=1,
        max_size=80,
    ),
)
def test_a_tenant_never_gets_more_than_burst_plus_rate_times_t(
    per_s: float, burst: int, steps: list[tuple[float, int]]
) -> None:
    rates, clock = limiter(search=Rate(per_s=per_s, burst=burst))
    admitted: list[tuple[float, int]] = []
    for dt, cost in steps:
        clock.t += dt
        cost = min(cost, burst)
        try:
            rates.take("search", "t", cost)
        except Overloaded as exc:
            wait = exc.retry_after_s
            assert wait > 0
            # the hint is enough: waiting it out (nothing else taken) lets this call pass
            probe, probe_clock = limiter(search=Rate(per_s=per_s, burst=burst))
            probe._buckets = {k: _copy(b) for k, b in rates._buckets.items()}
            probe_clock.t = clock.t + wait
            probe.take("search", "t", cost)
        else:
            admitted.append((clock.t, cost))
    for i, (start, _) in enumerate(admitted):
        total = 0
        for at, cost in admitted[i:]:
            total += cost
            assert total <= burst + per_s * (at - start) + 1e-6


def _copy(bucket: TokenBucket) -> TokenBucket:
    out = TokenBucket(bucket.rate, bucket._at)
    out._tokens = bucket._tokens
    return out
