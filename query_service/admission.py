"""Admission control: bound the work in flight, refuse at once what cannot start in time.

Nothing waits in a queue. A request either gets a permit now and runs at once (each class of
work has its own thread pool, as large as that class's limit, so an admitted call never waits
for a thread) or is refused with ``Overloaded``, which transports answer with 429 and
``Retry-After``, or gRPC RESOURCE_EXHAUSTED, in well under a millisecond.

The search limit adapts (AIMD, as in TCP congestion control and Netflix's concurrency-limits):
an admitted search that took longer than ``target_s`` shrinks the limit by ``backoff``; one
that finished in time while the limit was full grows it by ``1 / limit``. Latency under load
is then about ``limit × service time / cores`` and stays under the budget, whatever is offered.

The event loop's lag (``loop_lag.LoopLag``) is the second signal: while it is over
``lag_target_s``, the limit shrinks too and cannot grow. Requests wait for the loop before
their arrival is stamped, so this is the only way the budget sees that wait.

Fairness: when more than one tenant is active, a tenant that holds its share of the limit
(``limit / active tenants``) may take one more slot only while ``reserve`` of the limit stays
free for the others; one tenant flooding cannot starve the rest.

Ingest is shed first: while searches are under pressure (more than ``pressure_share`` of
them refused for capacity over the last one to two ``pressure_window_s``), ingest is
refused, so a burst of writes never takes the cores that searches need; otherwise it runs,
up to ``ingest_limit`` at a time. A live turn's store (the context stream) is ``urgent``:
bounded by the ingest limit, but not shed for search pressure, as the conversation's own
words are what later searches need.

Only work not yet started is refused: a write that was acknowledged is durable and is never
dropped.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from query_service.errors import Overloaded

Kind = Literal["search", "ingest", "other"]
KINDS: tuple[Kind, ...] = ("search", "ingest", "other")


@dataclass(frozen=True, slots=True)
class AdmissionParams:
    search_limit_initial: int = 4
    search_limit_min: int = 1
    search_limit_max: int = 16
    #: an admitted search slower than this (server side) shrinks the limit
    target_s: float = 0.025
    #: the multiplicative decrease
    backoff: float = 0.9
    #: at most one decrease per this many seconds (one slow burst is one signal)
    decrease_interval_s: float = 0.05
    #: the event loop's lag over this shrinks the search limit, and stops it growing
    lag_target_s: float = 0.004
    ingest_limit: int = 2
    other_limit: int = 4
    #: a tenant over its share may take a slot only while this share of the limit stays free
    reserve: float = 0.25
    #: a tenant counts as active this long after its last request
    active_window_s: float = 1.0
    #: searches are under pressure while more than this share of them was refused ...
    pressure_share: float = 0.10
    #: ... over the current and the previous window of this length
    pressure_window_s: float = 0.5
    retry_after_s: float = 1.0

    def __post_init__(self) -> None:
        if not 1 <= self.search_limit_min <= self.search_limit_initial <= self.search_limit_max:
            raise ValueError("need 1 <= search_limit_min <= initial <= max")
        if not 0 < self.backoff < 1:
            raise ValueError("backoff must be in (0, 1)")
        if self.ingest_limit < 1 or self.other_limit < 1:
            raise ValueError("ingest_limit and other_limit must be >= 1")


class Permit:
    """One admitted call; ``release`` exactly once (later calls do nothing)."""

    __slots__ = ("_admission", "_kind", "_tenant", "_saturated", "_released")

    def __init__(self, admission: Admission, kind: Kind, tenant: str, saturated: bool) -> None:
        self._admission = admission
        self._kind = kind
        self._tenant = tenant
        self._saturated = saturated
        self._released = False

    @property
    def kind(self) -> Kind:
        return self._kind

    def release(self, latency_s: float | None = None) -> None:
        """Give the slot back; ``latency_s`` (None: it failed) teaches the search limit."""
        if self._released:
            return
        self._released = True
        self._admission._release(self._kind, self._tenant, latency_s, self._saturated)


class Admission:
    def __init__(
        self,
        params: AdmissionParams | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        lag: Callable[[], float] = lambda: 0.0,
    ) -> None:
        """``lag``: the event loop's current lag in seconds (``LoopLag.lag_s``)."""
        self.params = params or AdmissionParams()
        self._clock = clock
        self._lag = lag
        self._lock = threading.Lock()
        self._limit = float(self.params.search_limit_initial)
        self._last_decrease = -math.inf
        self._window_at = clock()
        self._window = [0, 0]  # searches admitted, refused for capacity: this window
        self._previous = [0, 0]  # ... and the one before
        self._inflight: dict[Kind, int] = dict.fromkeys(KINDS, 0)
        self._by_tenant: dict[str, int] = {}
        self._seen: dict[str, float] = {}

    @property
    def search_limit(self) -> int:
        return max(self.params.search_limit_min, int(self._limit))

    def check(self, kind: Kind, tenant: str) -> None:
        """Raise ``Overloaded`` if ``try_acquire`` would refuse now (a cheap early look, for
        transports that can refuse before reading the request). It takes nothing and does
        not count as an admitted search: the ``try_acquire`` that follows does."""
        self._admit(kind, tenant, urgent=False, take=False)

    def inflight(self, kind: Kind) -> int:
        return self._inflight[kind]

    def limit_of(self, kind: Kind) -> int:
        if kind == "search":
            return self.search_limit
        return self.params.ingest_limit if kind == "ingest" else self.params.other_limit

    def try_acquire(self, kind: Kind, tenant: str, *, urgent: bool = False) -> Permit:
        """A permit now, or ``Overloaded`` now (``urgent``: ingest not shed for pressure)."""
        permit = self._admit(kind, tenant, urgent=urgent, take=True)
        assert permit is not None
        return permit

    def _admit(self, kind: Kind, tenant: str, *, urgent: bool, take: bool) -> Permit | None:
        """Every refusal rule; with ``take``, the permit and its counts."""
        p = self.params
        now = self._clock()
        with self._lock:
            limit = self.limit_of(kind)
            inflight = self._inflight[kind]
            if kind == "search":
                self._roll(now)
                if self._lag() > p.lag_target_s:
                    self._decrease(now)
                    limit = self.limit_of(kind)
            if inflight >= limit:
                if kind == "search":
                    self._window[1] += 1
                raise Overloaded(
                    f"{kind}: {inflight} in flight, at the limit of {limit}",
                    retry_after_s=p.retry_after_s,
                    reason="capacity",
                )
            if kind == "ingest" and not urgent and self._under_pressure(now):
                raise Overloaded(
                    "ingest is shed while searches are under pressure",
                    retry_after_s=p.retry_after_s,
                    reason="priority",
                )
            if kind == "search" and not self._fair(tenant, limit, inflight, now):
                raise Overloaded(
                    f"tenant over its share of {limit} search slots",
                    retry_after_s=p.retry_after_s,
                    reason="fairness",
                )
            if not take:
                return None
            self._seen[tenant] = now
            self._inflight[kind] = inflight + 1
            if kind == "search":
                self._window[0] += 1
                self._by_tenant[tenant] = self._by_tenant.get(tenant, 0) + 1
            return Permit(self, kind, tenant, saturated=inflight + 1 >= limit)

    def _decrease(self, now: float) -> None:
        """Multiplicative decrease, at most once per ``decrease_interval_s`` (lock held)."""
        p = self.params
        if now - self._last_decrease >= p.decrease_interval_s:
            self._limit = max(float(p.search_limit_min), self._limit * p.backoff)
            self._last_decrease = now

    def _roll(self, now: float) -> None:
        elapsed = now - self._window_at
        if elapsed >= self.params.pressure_window_s:
            # a long quiet spell forgets the old window too
            self._previous = self._window if elapsed < 2 * self.params.pressure_window_s else [0, 0]
            self._window = [0, 0]
            self._window_at = now

    def _under_pressure(self, now: float) -> bool:
        self._roll(now)
        admitted = self._window[0] + self._previous[0]
        refused = self._window[1] + self._previous[1]
        return refused > 0 and refused > self.params.pressure_share * (admitted + refused)

    def _fair(self, tenant: str, limit: int, inflight: int, now: float) -> bool:
        window = self.params.active_window_s
        active = sum(1 for t, at in self._seen.items() if t != tenant and now - at <= window) + 1
        if len(self._seen) > 4096:  # forget tenants long gone
            self._seen = {t: at for t, at in self._seen.items() if now - at <= window}
        if active == 1:
            return True
        held = self._by_tenant.get(tenant, 0)
        if held < max(1, limit // active):
            return True
        free_after = limit - inflight - 1
        return free_after >= math.ceil(limit * self.params.reserve)

    def _release(self, kind: Kind, tenant: str, latency_s: float | None, saturated: bool) -> None:
        p = self.params
        with self._lock:
            self._inflight[kind] -= 1
            if kind != "search":
                return
            held = self._by_tenant.get(tenant, 1) - 1
            if held:
                self._by_tenant[tenant] = held
            else:
                self._by_tenant.pop(tenant, None)
            if latency_s is None:
                return
            now = self._clock()
            if latency_s > p.target_s:
                self._decrease(now)
            elif saturated and self._lag() <= p.lag_target_s:
                self._limit = min(float(p.search_limit_max), self._limit + 1.0 / self._limit)
