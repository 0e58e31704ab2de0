"""`RetryPolicy`: exponential back-off with full jitter, for idempotent calls only.

The n-th retry (n = 0, 1, ...) waits ``uniform(0, min(cap_s, base_s * 2**n))``: "full
jitter" (Brooks, *Exponential Backoff And Jitter*, AWS Architecture Blog, 2015), which spreads
the retries of many clients shed at the same moment. When the service says how long to wait
(``Overloaded.retry_after_s``: HTTP ``Retry-After`` or the body's ``retry_after_ms``, gRPC's
``retry-after-ms`` trailer), the wait is at least that, and never more than ``cap_s``.

Which errors are worth a retry depends on the transport and is the client's to say
(``retryable``); a policy with ``max_attempts=1`` never retries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from convmem_client.errors import ConvmemError, Overloaded


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    #: attempts in all, the first included (1: no retries)
    max_attempts: int = 3
    base_s: float = 0.1
    cap_s: float = 2.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if self.base_s < 0 or self.cap_s < 0:
            raise ValueError("base_s and cap_s must be >= 0")

    def backoff_s(self, retry: int, rng: Callable[[], float]) -> float:
        """The full-jitter wait before retry number ``retry`` (0-based); ``rng`` in [0, 1)."""
        ceiling = min(self.cap_s, self.base_s * 2.0**retry)
        return ceiling * rng()

    def delay_s(self, retry: int, error: ConvmemError, rng: Callable[[], float]) -> float:
        """The wait before retry ``retry`` after ``error``: the service's hint, if it gave one,
        or the back-off, whichever is longer, capped at ``cap_s``."""
        wait = self.backoff_s(retry, rng)
        if isinstance(error, Overloaded):
            wait = max(wait, error.retry_after_s)
        return min(self.cap_s, wait)


def next_delay(
    policy: RetryPolicy,
    attempt: int,
    error: ConvmemError,
    *,
    idempotent: bool,
    retryable: Callable[[ConvmemError], bool],
    rng: Callable[[], float],
) -> float | None:
    """How long to wait before another try after ``attempt`` (0-based) failed; None: give up."""
    if not idempotent or attempt + 1 >= policy.max_attempts or not retryable(error):
        return None
    return policy.delay_s(attempt, error, rng)
