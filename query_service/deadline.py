"""`Deadline`: one per request, passed down explicitly, turned into ``timeout_s`` at adapters."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Deadline:
    """An absolute point in time on an injectable monotonic clock."""

    at: float
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)

    @classmethod
    def after_ms(cls, budget_ms: float, *, clock: Callable[[], float] = time.monotonic) -> Deadline:
        if budget_ms <= 0:
            raise ValueError(f"budget_ms must be positive, got {budget_ms}")
        return cls(at=clock() + budget_ms / 1000.0, clock=clock)

    def remaining(self) -> float:
        """Seconds left (never negative)."""
        return max(0.0, self.at - self.clock())

    def remaining_ms(self) -> float:
        return self.remaining() * 1000.0

    def expired(self) -> bool:
        return self.clock() >= self.at

    def slice(self, max_s: float) -> Deadline:
        """A sub-deadline: at most ``max_s`` from now, never past this one."""
        return Deadline(at=min(self.at, self.clock() + max_s), clock=self.clock)
