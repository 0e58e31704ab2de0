"""The per-tenant cap on open sessions, unit level."""

from __future__ import annotations

import asyncio

import pytest

from query_service.errors import Overloaded
from query_service.sessions import SessionLimits, SessionSlots


def test_a_tenant_at_its_cap_is_refused_and_others_are_not() -> None:
    slots = SessionSlots(SessionLimits(per_tenant=2, retry_after_s=3.0))
    a, _b = slots.acquire("acme"), slots.acquire("acme")
    with pytest.raises(Overloaded) as err:
        slots.acquire("acme")
    assert err.value.reason == "sessions" and err.value.retry_after_s == 3.0
    assert "2 open sessions" in str(err.value)
    slots.acquire("beta")  # another tenant's sessions are its own
    a.release()
    a.release()  # a second release gives nothing back twice
    assert slots.held("acme") == 1
    slots.acquire("acme")
    with pytest.raises(Overloaded):
        slots.acquire("acme")


def test_the_slot_comes_back_however_the_session_ends() -> None:
    slots = SessionSlots(SessionLimits(per_tenant=1))
    with slots.acquire("t"):
        assert slots.held("t") == 1
    assert slots.held("t") == 0
    with pytest.raises(RuntimeError), slots.acquire("t"):
        raise RuntimeError("the session failed")
    assert slots.held("t") == 0

    async def session() -> None:
        with slots.acquire("t"):
            await asyncio.sleep(60)

    async def cancel_one() -> None:
        task = asyncio.create_task(session())
        await asyncio.sleep(0.01)
        assert slots.held("t") == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_one())
    assert slots.held("t") == 0
    assert slots._held == {}  # a tenant with none open is forgotten


def test_no_cap_and_bad_caps() -> None:
    slots = SessionSlots(SessionLimits(per_tenant=None))
    held = [slots.acquire("t") for _ in range(10_000)]
    assert slots.held("t") == len(held)
    with pytest.raises(ValueError, match="per_tenant"):
        SessionLimits(per_tenant=0)
