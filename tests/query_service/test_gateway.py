"""The gateway's bookkeeping: a slot comes back however a call ends."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

from query_service.admission import Admission, AdmissionParams
from query_service.auth import KeyRing
from query_service.gateway import Gateway
from query_service.metrics import Metrics


def gateway() -> Gateway:
    return Gateway(admission=Admission(AdmissionParams()), metrics=Metrics(), auth=KeyRing())


def test_work_dropped_before_it_starts_gives_its_slot_back() -> None:
    gw = gateway()
    blocker = threading.Event()
    ran: list[str] = []
    # one worker, kept busy, so the next call's work waits in the pool's queue
    gw._pools["search"] = ThreadPoolExecutor(max_workers=1)  # noqa: SLF001 - the queue to test
    gw._pools["search"].submit(blocker.wait)  # noqa: SLF001

    async def scenario() -> int:
        call = asyncio.ensure_future(
            gw._run("search", "t", lambda: ran.append("x"), None, "test")  # noqa: SLF001
        )
        await asyncio.sleep(0.05)
        assert gw.admission.inflight("search") == 1
        call.cancel()  # the caller goes away while the work is still queued
        await asyncio.sleep(0.05)
        return gw.admission.inflight("search")

    try:
        assert asyncio.run(scenario()) == 0
    finally:
        blocker.set()
        gw.close()
    assert ran == []  # dropped, not run


def test_a_caller_that_stops_waiting_for_running_work_frees_the_slot_when_it_ends() -> None:
    gw = gateway()
    started, finish = threading.Event(), threading.Event()

    def work() -> str:
        started.set()
        finish.wait(5)
        return "done"

    async def scenario() -> tuple[int, int]:
        call = asyncio.ensure_future(gw._run("search", "t", work, None, "test"))  # noqa: SLF001
        while not started.is_set():
            await asyncio.sleep(0.005)
        call.cancel()
        await asyncio.sleep(0.02)
        during = gw.admission.inflight("search")  # still running: still counted
        finish.set()
        await asyncio.sleep(0.05)
        return during, gw.admission.inflight("search")

    try:
        assert asyncio.run(scenario()) == (1, 0)
    finally:
        finish.set()
        gw.close()


def test_a_search_whose_budget_ran_out_before_it_could_start_is_deadline_exceeded() -> None:
    import pytest

    from query_service.api_models import SearchBody
    from query_service.errors import DeadlineExceeded

    gw = gateway()

    class NeverCalled:
        def search(self, *_args: object) -> None:
            raise AssertionError("a search without time must not start")

    gw.attach(NeverCalled())  # type: ignore[arg-type]  # only .search would be used
    late = gw.now() - 0.049  # arrived 49 ms ago, with a 50 ms budget
    body = SearchBody(query="peanuts", budget_ms=50)
    try:
        with pytest.raises(DeadlineExceeded, match="budget ran out"):
            asyncio.run(gw.search("t", body, arrival=late, transport="test"))
        assert gw.admission.inflight("search") == 0
    finally:
        gw.close()


def test_a_cancelled_search_abandons_its_deadline_so_running_work_ends_early() -> None:
    """A search blocked on its deadline (a ``min_seq`` wait, say) is told the caller is gone:
    it stops within a slice and its slot comes back long before its 2 s budget is spent."""
    from query_service.api_models import SearchBody
    from query_service.deadline import Deadline

    gw = gateway()
    started = threading.Event()
    seen: list[Deadline] = []

    class WaitsOnItsDeadline:
        def search(self, _tenant: str, _body: SearchBody, deadline: Deadline) -> None:
            seen.append(deadline)
            started.set()
            while not deadline.expired():
                threading.Event().wait(0.005)

    gw.attach(WaitsOnItsDeadline())  # type: ignore[arg-type]  # only .search is used
    body = SearchBody(query="peanuts", budget_ms=2000)

    async def scenario() -> float:
        call = asyncio.ensure_future(gw.search("t", body, arrival=gw.now(), transport="test"))
        while not started.is_set():
            await asyncio.sleep(0.005)
        t0 = gw.now()
        call.cancel()
        while gw.admission.inflight("search"):
            await asyncio.sleep(0.005)
            assert gw.now() - t0 < 1.0, "the slot was held to the deadline"
        return gw.now() - t0

    try:
        asyncio.run(scenario())
        assert seen[0].abandoned and seen[0].remaining() == 0.0
        assert seen[0].slice(1.0).expired()  # a slice of an abandoned deadline is over too
    finally:
        gw.close()


def test_the_rate_is_asked_before_admission_and_a_refused_call_keeps_its_tokens() -> None:
    import pytest

    from query_service.errors import Overloaded
    from query_service.rate_limit import Rate, RateLimiter, RateLimits

    metrics = Metrics()
    rates = RateLimiter(RateLimits(search=None, ingest=Rate(per_s=0.001, burst=10)))
    gw = Gateway(
        admission=Admission(AdmissionParams(ingest_limit=1)),
        metrics=metrics,
        auth=KeyRing(),
        rates=rates,
    )

    async def scenario() -> None:
        held = gw.admission.try_acquire("ingest", "t")  # the one ingest slot is busy
        with pytest.raises(Overloaded) as busy:
            await gw._run("ingest", "t", lambda: None, None, "test", cost=8)  # noqa: SLF001
        assert busy.value.reason == "capacity"
        assert rates.tokens("ingest", "t") == pytest.approx(10)  # given back
        held.release()
        await gw._run("ingest", "t", lambda: None, None, "test", cost=8)  # noqa: SLF001
        with pytest.raises(Overloaded) as over:  # 2 left: refused by the rate, not admission
            await gw._run("ingest", "t", lambda: None, None, "test", cost=8)  # noqa: SLF001
        assert over.value.reason == "rate_limit"
        assert gw.admission.inflight("ingest") == 0
        await gw._run("other", "t", lambda: None, None, "test")  # reads are not rate limited

    try:
        asyncio.run(scenario())
    finally:
        gw.close()
    page = metrics.render().decode()
    assert 'convmem_shed_total{op="ingest",reason="capacity",transport="test"} 1.0' in page
    assert 'convmem_shed_total{op="ingest",reason="rate_limit",transport="test"} 1.0' in page
    assert 'convmem_requests_total{op="ingest",outcome="shed",transport="test"} 2.0' in page
