"""The event-loop lag monitor and the heap freezer."""

from __future__ import annotations

import asyncio
import gc
import time

from query_service.heap import HeapFreezer
from query_service.loop_lag import LoopLag


def test_the_moving_average_follows_observed_lag() -> None:
    lag = LoopLag(alpha=0.5)
    lag.observe(0.010)
    lag.observe(0.010)
    assert abs(lag.lag_s - 0.0075) < 1e-9
    lag.observe(-1.0)  # an early wake-up is no lag
    assert abs(lag.lag_s - 0.00375) < 1e-9


def test_a_blocked_loop_shows_up_as_lag_and_stop_resets_it() -> None:
    async def scenario() -> tuple[float, float]:
        monitor = LoopLag(interval_s=0.002, alpha=1.0)
        monitor.start()
        await asyncio.sleep(0.02)
        time.sleep(0.05)  # the loop is blocked for 50 ms
        await asyncio.sleep(0.001)
        seen = monitor.lag_s
        await monitor.stop()
        return seen, monitor.lag_s

    seen, after = asyncio.run(scenario())
    assert seen >= 0.03
    assert after == 0.0


def test_the_freezer_freezes_first_and_then_only_after_growth() -> None:
    size = [10]
    freezer = HeapFreezer(size=lambda: size[0], min_growth=100)
    try:
        assert freezer.maybe_freeze()
        assert gc.get_freeze_count() > 0
        size[0] = 60
        assert not freezer.maybe_freeze()
        size[0] = 111
        assert freezer.maybe_freeze()
    finally:
        gc.unfreeze()
