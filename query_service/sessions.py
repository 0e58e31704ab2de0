"""A cap on the live sessions each tenant holds open at once.

A session is a long-lived stream: the context WebSocket (``/v1/context/stream``), the audio
WebSocket (``/v1/audio/stream``) and the gRPC ``Converse`` stream all count against the same
cap, as they hold the same kind of resource for as long as a call lasts. A session past the
cap is refused at once (``Overloaded``, reason ``sessions``): the WebSockets answer an
``error`` event (code ``too_many_sessions``) and close with 1013 (try again later), gRPC
RESOURCE_EXHAUSTED. The slot is given back however the session ends (``with`` the slot, or
``release``; later releases do nothing), so a normal end, a disconnect, an error and a
cancelled call each free it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from types import TracebackType

from query_service.errors import Overloaded

#: about what one process can serve: a live call's turn every ~3 s, ~170 searches/s
DEFAULT_PER_TENANT = 512


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """``per_tenant``: open sessions per tenant (None: no cap); ``retry_after_s``: the hint."""

    per_tenant: int | None = DEFAULT_PER_TENANT
    retry_after_s: float = 1.0

    def __post_init__(self) -> None:
        if self.per_tenant is not None and self.per_tenant < 1:
            raise ValueError("per_tenant must be >= 1 (no cap: None)")


class SessionSlot:
    """One open session's slot; ``release`` it exactly once (later calls do nothing)."""

    __slots__ = ("_slots", "_tenant", "_released")

    def __init__(self, slots: SessionSlots, tenant: str) -> None:
        self._slots = slots
        self._tenant = tenant
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._slots._release(self._tenant)

    def __enter__(self) -> SessionSlot:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class SessionSlots:
    def __init__(self, limits: SessionLimits | None = None) -> None:
        self.limits = SessionLimits() if limits is None else limits
        self._lock = threading.Lock()
        self._held: dict[str, int] = {}

    def acquire(self, tenant: str) -> SessionSlot:
        """A slot now, or ``Overloaded`` now."""
        cap = self.limits.per_tenant
        with self._lock:
            held = self._held.get(tenant, 0)
            if cap is not None and held >= cap:
                raise Overloaded(
                    f"this tenant holds {held} open sessions, its limit; end one or retry later",
                    retry_after_s=self.limits.retry_after_s,
                    reason="sessions",
                )
            self._held[tenant] = held + 1
        return SessionSlot(self, tenant)

    def held(self, tenant: str) -> int:
        return self._held.get(tenant, 0)

    def _release(self, tenant: str) -> None:
        with self._lock:
            held = self._held.get(tenant, 1) - 1
            if held > 0:
                self._held[tenant] = held
            else:
                self._held.pop(tenant, None)
