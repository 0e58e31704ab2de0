"""`Metrics`: what the limiter and the pipeline see, for ``/metrics`` (Prometheus text).

Each app owns its own ``CollectorRegistry`` (no process-global state, so two apps in one test
process do not collide). Names:

- ``convmem_stage_seconds{stage}``: histogram of each search stage's time;
- ``convmem_stage_skipped_total{stage}``: stages skipped to keep the budget;
- ``convmem_requests_total{transport, op, outcome}``: outcome ok, degraded, shed, error;
- ``convmem_shed_total{transport, op, reason}``: the shed ones by why: ``capacity``,
  ``fairness``, ``priority`` (admission), ``rate_limit`` (the tenant's rate), ``sessions``
  (the tenant's open sessions);
- ``convmem_request_seconds{transport, op}``: server-side latency from arrival;
- ``convmem_inflight{kind}`` and ``convmem_limit{kind}``: admitted work and its bound;
- ``convmem_index_lag_seq`` and ``convmem_index_lag_seconds``: the index behind the store;
- ``convmem_loop_lag_seconds``: how late the event loop runs (a load signal, ``loop_lag``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

Outcome = Literal["ok", "degraded", "shed", "error"]
_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._stage = Histogram(
            "convmem_stage_seconds",
            "search stage time",
            ["stage"],
            registry=r,
            buckets=_LATENCY_BUCKETS,
        )
        self._skipped = Counter(
            "convmem_stage_skipped", "stages skipped to keep the budget", ["stage"], registry=r
        )
        self._requests = Counter(
            "convmem_requests", "requests by outcome", ["transport", "op", "outcome"], registry=r
        )
        self._shed = Counter(
            "convmem_shed",
            "calls refused at once, by reason",
            ["transport", "op", "reason"],
            registry=r,
        )
        self._latency = Histogram(
            "convmem_request_seconds",
            "server-side latency from arrival",
            ["transport", "op"],
            registry=r,
            buckets=_LATENCY_BUCKETS,
        )
        self._inflight = Gauge("convmem_inflight", "admitted calls running", ["kind"], registry=r)
        self._limit = Gauge("convmem_limit", "admission limit", ["kind"], registry=r)
        self._lag_seq = Gauge("convmem_index_lag_seq", "store seq - index seq", registry=r)
        self._loop_lag = Gauge(
            "convmem_loop_lag_seconds", "event-loop lag (moving average)", registry=r
        )
        self._lag_s = Gauge(
            "convmem_index_lag_seconds", "age of the oldest change not yet indexed", registry=r
        )

    # the Searcher's stage hook (``searcher.StageObserver``)
    def stage_done(self, stage: str, seconds: float) -> None:
        self._stage.labels(stage).observe(seconds)

    def stage_skipped(self, stage: str) -> None:
        self._skipped.labels(stage).inc()

    def request(self, transport: str, op: str, outcome: Outcome, seconds: float | None) -> None:
        self._requests.labels(transport, op, outcome).inc()
        if seconds is not None:
            self._latency.labels(transport, op).observe(seconds)

    def refused(self, transport: str, op: str, reason: str, seconds: float | None) -> None:
        """A call refused at once: outcome ``shed``, and counted by ``reason``."""
        self.request(transport, op, "shed", seconds)
        self._shed.labels(transport, op, reason).inc()

    def bind(
        self,
        *,
        inflight: Callable[[str], float],
        limit: Callable[[str], float],
        lag_seq: Callable[[], float],
        lag_s: Callable[[], float],
        loop_lag_s: Callable[[], float] = lambda: 0.0,
    ) -> None:
        """Gauges read at scrape time from the running app."""
        for kind in ("search", "ingest", "other"):
            self._inflight.labels(kind).set_function(_reader(inflight, kind))
            self._limit.labels(kind).set_function(_reader(limit, kind))
        self._lag_seq.set_function(lag_seq)
        self._lag_s.set_function(lag_s)
        self._loop_lag.set_function(loop_lag_s)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _reader(read: Callable[[str], float], kind: str) -> Callable[[], float]:
    return lambda: read(kind)
