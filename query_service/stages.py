"""`StageRunner`: the one place a search stage is costed, timed, skipped or abandoned.

Before a stage runs, the runner compares what is left of the deadline with that stage's
recent cost (``StageCosts``, an exponentially weighted moving average); a stage that would
not fit is skipped and named in ``degraded``. Every stage that runs is timed into
``timings_ms`` and reported to the ``StageObserver`` (metrics). A stage that runs on an
executor (the query embedding, the cross-encoder) is waited for no longer than the deadline;
an abandoned one is cancelled if it has not started, and skips its work if it starts late.
A remote tier's call that times out (``IndexTimeout``) degrades its stage the same way.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Protocol, TypeVar

from indexer.errors import IndexTimeout
from query_service.deadline import Deadline

T = TypeVar("T")


class StageObserver(Protocol):
    def stage_done(self, stage: str, seconds: float) -> None: ...

    def stage_skipped(self, stage: str) -> None: ...


class StageCosts:
    """Recent cost of each stage in seconds (EWMA), used to decide what fits."""

    def __init__(self, initial: dict[str, float], alpha: float = 0.2) -> None:
        self._cost = dict(initial)
        self._alpha = alpha
        self._lock = threading.Lock()

    def fits(self, stage: str, remaining_s: float) -> bool:
        """Whether the stage's recent cost fits; a miss shrinks the estimate a little.

        The shrink matters: a stage that was slow once (a GC pause, a busy neighbour) would
        otherwise never run again, and so never be measured again.
        """
        with self._lock:
            cost = self._cost.get(stage, 0.0005)
            if remaining_s >= cost:
                return True
            self._cost[stage] = cost * 0.8
            return False

    def observe(self, stage: str, seconds: float) -> None:
        with self._lock:
            old = self._cost.get(stage, seconds)
            self._cost[stage] = (1 - self._alpha) * old + self._alpha * seconds


class _Abandoned(Exception):
    pass


class StageRunner:
    """One search's stages. ``timings_ms`` and ``degraded`` are the search result's own."""

    def __init__(
        self,
        *,
        costs: StageCosts,
        usable: Deadline,
        clock: Callable[[], float],
        timings_ms: dict[str, float],
        degraded: list[str],
        observer: StageObserver | None = None,
    ) -> None:
        self.usable = usable
        self._costs = costs
        self._clock = clock
        self._timings = timings_ms
        self._degraded = degraded
        self._observer = observer

    def skip(self, *stages: str) -> None:
        for stage in stages:
            self._degraded.append(stage)
            if self._observer is not None:
                self._observer.stage_skipped(stage)

    def record(self, stage: str, seconds: float, *, learn: bool = True) -> None:
        if learn:
            self._costs.observe(stage, seconds)
        self._timings[stage] = round(seconds * 1000, 3)
        if self._observer is not None:
            self._observer.stage_done(stage, seconds)

    def fits(self, stage: str) -> bool:
        return self._costs.fits(stage, self.usable.remaining())

    def run(self, stage: str, fn: Callable[[], T], *, also: Sequence[str] = ()) -> T | None:
        """``fn()`` if its recent cost fits, else None with ``stage`` (and ``also``) degraded."""
        if not self.fits(stage):
            self.skip(stage, *also)
            return None
        t0 = self._clock()
        try:
            out = fn()
        except IndexTimeout:  # a remote tier gave up on the call: that stage is degraded
            self.record(stage, self._clock() - t0)
            self.skip(stage, *also)
            return None
        self.record(stage, self._clock() - t0)
        return out

    def run_on(
        self, executor: Executor, stage: str, fn: Callable[[], T], *, also: Sequence[str] = ()
    ) -> T | None:
        """``run`` on ``executor``, waited for no longer than the deadline.

        The cost is learnt from the work itself, even when the caller gave up waiting, so a
        slow model is seen as slow. Work that starts after the deadline does nothing.
        """
        if not self.fits(stage):
            self.skip(stage, *also)
            return None
        usable, clock, costs = self.usable, self._clock, self._costs

        def work() -> tuple[T, float]:
            if usable.expired():
                raise _Abandoned
            t0 = clock()
            out = fn()
            took = clock() - t0
            costs.observe(stage, took)
            return out, took

        future = executor.submit(work)
        try:
            out, took = future.result(timeout=usable.remaining())
        except (FutureTimeout, _Abandoned):
            future.cancel()
            self.skip(stage, *also)
            return None
        self.record(stage, took, learn=False)
        return out
