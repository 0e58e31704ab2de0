"""`HeapFreezer`: keep the index's long-lived objects out of the cyclic garbage collector.

The shard holds a record per utterance: hundreds of thousands of Python objects that live as
long as the process. Each full collection walks all of them, a pause of tens of milliseconds
that lands on whatever request is running, and under load that is the p99. ``gc.freeze()``
moves every object alive now to a permanent generation that collections skip (the approach
Instagram described for its Django fleet). Records are not cyclic, so one deleted later is
still freed by reference counting. The freezer freezes after start-up and again whenever the
index has grown by ``min_growth`` documents since the last time.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable


class HeapFreezer:
    def __init__(self, *, size: Callable[[], int], min_growth: int = 5000) -> None:
        self._size = size
        self._min_growth = min_growth
        self._frozen_at: int | None = None

    def maybe_freeze(self) -> bool:
        """Freeze if never done, or if the index grew by ``min_growth``; True if it froze."""
        n = self._size()
        if self._frozen_at is not None and n - self._frozen_at < self._min_growth:
            return False
        gc.collect(1)  # the young garbage goes first: only survivors are frozen
        gc.freeze()
        self._frozen_at = n
        return True

    async def run(self, interval_s: float = 5.0) -> None:
        while True:
            self.maybe_freeze()
            await asyncio.sleep(interval_s)
