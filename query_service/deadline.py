"""`Deadline`: one per request, passed down explicitly, turned into ``timeout_s`` at adapters."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Deadline:
    """An absolute point in time on an injectable monotonic clock.

    A deadline can be *abandoned*: the caller stopped waiting (a cancelled gRPC call, a
    closed connection). From then on nothing is left of it, here and in every slice of it,
    so work already running on a worker thread skips its remaining stages and gives its
    admission slot back at once instead of holding it to the end of the budget.
    """

    at: float
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)
    _abandoned: threading.Event = field(default_factory=threading.Event, compare=False, repr=False)

    @classmethod
    def after_ms(cls, budget_ms: float, *, clock: Callable[[], float] = time.monotonic) -> Deadline:
        if budget_ms <= 0:
            raise ValueError(f"budget_ms must be positive, got {budget_ms}")
        return cls(at=clock() + budget_ms / 1000.0, clock=clock)

    def remaining(self) -> float:
        """Seconds left (never negative)."""
        if self._abandoned.is_set():
            return 0.0
        return max(0.0, self.at - self.clock())

    def remaining_ms(self) -> float:
        return self.remaining() * 1000.0

    def expired(self) -> bool:
        return self._abandoned.is_set() or self.clock() >= self.at

    def abandon(self) -> None:
        """The caller is gone: this deadline and all its slices expire now."""
        self._abandoned.set()

    @property
    def abandoned(self) -> bool:
        return self._abandoned.is_set()

    def slice(self, max_s: float) -> Deadline:
        """A sub-deadline: at most ``max_s`` from now, never past this one."""
        return Deadline(
            at=min(self.at, self.clock() + max_s), clock=self.clock, _abandoned=self._abandoned
        )
