"""`LoopLag`: how late the event loop runs what it was asked to run, as a load signal.

Every request, admitted or refused, is read, parsed and answered on the event loop, and in
this process every search thread shares one interpreter lock with it. Work that waits for the
loop waits before its arrival is stamped, so the search budget cannot see it; the loop's lag
can. The monitor sleeps ``interval_s`` again and again and keeps a moving average of how much
longer than that each sleep took (as Node's ``toobusy`` does). Admission control shrinks the
search limit while the lag is over its target, which keeps the loop from saturating, and
with it the time that requests spend queued ahead of the budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable


class LoopLag:
    def __init__(
        self,
        *,
        interval_s: float = 0.005,
        alpha: float = 0.3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._interval = interval_s
        self._alpha = alpha
        self._clock = clock
        self._lag = 0.0
        self._task: asyncio.Task[None] | None = None

    @property
    def lag_s(self) -> float:
        """The moving average of the loop's lag, in seconds (0 when not running)."""
        return self._lag

    def observe(self, lag_s: float) -> None:
        self._lag = (1 - self._alpha) * self._lag + self._alpha * max(0.0, lag_s)

    def start(self) -> None:
        """Start measuring on the running loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="loop-lag")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._lag = 0.0

    async def _run(self) -> None:
        while True:
            t0 = self._clock()
            await asyncio.sleep(self._interval)
            self.observe(self._clock() - t0 - self._interval)
