"""Per-tenant rate limits: a token bucket per (tenant, class), on an injectable clock.

A bucket holds at most ``burst`` tokens and gains ``per_s`` a second; a call that costs ``c``
(a search 1, an ingest batch its number of utterances) is admitted if the bucket holds ``c``
tokens, which it then spends. Over any window of ``t`` seconds a tenant is therefore admitted
at most ``burst + per_s × t`` of a class (the bucket's one invariant, checked by a property
test). A refusal says when the same call would pass: ``(c − tokens) / per_s``, rounded up to
the millisecond, so a client that waits that long is not refused again by its own bucket.

This is a quota, not overload control (``admission``): it is checked first, because it is the
cheaper question, and a call that admission then refuses gets its tokens back
(``give_back``): a tenant retrying under overload does not burn its quota. Buckets are per
process: with ``n`` replicas a tenant may get ``n`` times the rate.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from indexer.errors import InvalidInput
from query_service.errors import Overloaded

RateClass = Literal["search", "ingest"]
#: what a class's cost counts, for messages
_UNIT: dict[RateClass, str] = {"search": "searches", "ingest": "utterances"}
#: tolerance for the float sum of many small refills (a token is never short by this)
_EPS = 1e-9
#: buckets past this many are pruned of the full ones (a full bucket is the same as none)
_PRUNE_AT = 4096


@dataclass(frozen=True, slots=True)
class Rate:
    """``per_s`` tokens a second, at most ``burst`` held (the largest call that can pass)."""

    per_s: float
    burst: float

    def __post_init__(self) -> None:
        if not self.per_s > 0:
            raise ValueError("a rate's per_s must be > 0 (no limit: no Rate)")
        if not self.burst >= 1:
            raise ValueError("a rate's burst must be >= 1")


#: a little over what one process was measured to serve (docs/LOAD.md: 169-327 searches/s)
DEFAULT_SEARCH = Rate(per_s=500.0, burst=1000.0)
#: twice REST ingest flat out on one process (docs/BENCHMARKS.md: 4,724 utterances/s)
DEFAULT_INGEST = Rate(per_s=10_000.0, burst=20_000.0)


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Each class's rate per tenant; None: that class is not rate limited."""

    search: Rate | None = field(default=DEFAULT_SEARCH)
    ingest: Rate | None = field(default=DEFAULT_INGEST)

    def of(self, cls: RateClass) -> Rate | None:
        return self.search if cls == "search" else self.ingest


class TokenBucket:
    """One bucket; the caller passes the time (``now``, seconds, never decreasing)."""

    __slots__ = ("rate", "_tokens", "_at")

    def __init__(self, rate: Rate, now: float) -> None:
        self.rate = rate
        self._tokens = rate.burst
        self._at = now

    def tokens(self, now: float) -> float:
        self._refill(now)
        return self._tokens

    def wait_s(self, cost: float, now: float) -> float:
        """0 if ``cost`` can be taken now, else the seconds (rounded up to the ms) until it can."""
        self._refill(now)
        short = cost - self._tokens
        if short <= _EPS:
            return 0.0
        return math.ceil(short / self.rate.per_s * 1000 - _EPS) / 1000

    def take(self, cost: float, now: float) -> float:
        """Spend ``cost`` and return 0, or spend nothing and return ``wait_s``."""
        wait = self.wait_s(cost, now)
        if wait == 0.0:
            self._tokens -= cost
        return wait

    def give_back(self, cost: float, now: float) -> None:
        self._refill(now)
        self._tokens = min(self.rate.burst, self._tokens + cost)

    def full(self, now: float) -> bool:
        return self.tokens(now) >= self.rate.burst

    def _refill(self, now: float) -> None:
        if now > self._at:
            self._tokens = min(self.rate.burst, self._tokens + (now - self._at) * self.rate.per_s)
            self._at = now


class RateLimiter:
    """The buckets of every (tenant, class); ``Overloaded`` (reason ``rate_limit``) when over."""

    def __init__(
        self, limits: RateLimits | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limits = RateLimits() if limits is None else limits
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[tuple[RateClass, str], TokenBucket] = {}

    def check(self, cls: RateClass, tenant: str) -> None:
        """Raise ``Overloaded`` unless the tenant has a token of ``cls`` now; takes nothing
        (the cheap early look, before a request's body is read and its cost known)."""
        self._ask(cls, tenant, 1, take=False)

    def take(self, cls: RateClass, tenant: str, cost: int = 1) -> None:
        """Spend ``cost`` of the tenant's ``cls`` tokens, or raise ``Overloaded``; a ``cost``
        over the burst could never pass and is ``InvalidInput``."""
        self._ask(cls, tenant, cost, take=True)

    def give_back(self, cls: RateClass, tenant: str, cost: int = 1) -> None:
        """Return what ``take`` spent, for a call refused after it (by admission control)."""
        if self.limits.of(cls) is None:
            return
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get((cls, tenant))
            if bucket is not None:
                bucket.give_back(cost, now)

    def tokens(self, cls: RateClass, tenant: str) -> float:
        """What the tenant holds now (``inf`` when ``cls`` is not limited)."""
        rate = self.limits.of(cls)
        if rate is None:
            return math.inf
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get((cls, tenant))
            return rate.burst if bucket is None else bucket.tokens(now)

    def _ask(self, cls: RateClass, tenant: str, cost: int, *, take: bool) -> None:
        rate = self.limits.of(cls)
        if rate is None:
            return
        if cost > rate.burst:
            raise InvalidInput(
                f"this call costs {cost} {_UNIT[cls]}, over the tenant's burst of "
                f"{rate.burst:g}: send at most {rate.burst:g} at a time"
            )
        now = self._clock()
        with self._lock:
            key = (cls, tenant)
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= _PRUNE_AT:
                    self._prune(now)
                bucket = self._buckets[key] = TokenBucket(rate, now)
            wait = bucket.take(cost, now) if take else bucket.wait_s(cost, now)
        if wait > 0:
            raise Overloaded(
                f"{cls}: this tenant is over its rate limit of {rate.per_s:g} {_UNIT[cls]}/s "
                f"(burst {rate.burst:g}); retry in {wait * 1000:.0f} ms",
                retry_after_s=wait,
                reason="rate_limit",
            )

    def _prune(self, now: float) -> None:
        """Forget full buckets (lock held): a tenant that comes back gets a full one anyway."""
        self._buckets = {k: b for k, b in self._buckets.items() if not b.full(now)}
