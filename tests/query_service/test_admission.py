"""Admission control, unit level: a fake clock, hand-checked limits."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from query_service.admission import Admission, AdmissionParams, Permit
from query_service.errors import Overloaded


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def admission(**kw: Any) -> tuple[Admission, Clock]:
    clock = Clock()
    return Admission(AdmissionParams(**kw), clock=clock), clock


def test_refuses_at_once_when_the_limit_is_full_and_admits_after_a_release() -> None:
    adm, _ = admission(search_limit_initial=2, search_limit_max=2)
    a = adm.try_acquire("search", "t")
    adm.try_acquire("search", "t")
    with pytest.raises(Overloaded) as err:
        adm.try_acquire("search", "t")
    assert err.value.reason == "capacity" and err.value.retry_after_s > 0
    a.release(0.001)
    a.release(0.001)  # a second release gives nothing back twice
    adm.try_acquire("search", "t")
    assert adm.inflight("search") == 2
    with pytest.raises(Overloaded):
        adm.try_acquire("search", "t")


def test_slow_searches_shrink_the_limit_multiplicatively_once_per_interval() -> None:
    adm, clock = admission(search_limit_initial=10, search_limit_max=16, target_s=0.02)
    for _ in range(3):  # one burst of slow answers is one signal
        adm.try_acquire("search", "t").release(0.05)
    assert adm.search_limit == 9  # 10 * 0.9
    clock.t += 0.1
    adm.try_acquire("search", "t").release(0.05)
    assert adm.search_limit == 8  # 9 * 0.9 = 8.1


def test_fast_searches_at_a_full_limit_grow_it_additively() -> None:
    adm, _ = admission(search_limit_initial=2, search_limit_max=4, target_s=0.02)
    for _ in range(8):
        held = [adm.try_acquire("search", "t") for _ in range(adm.search_limit)]
        for permit in held:  # only the one that filled the limit saw it full
            permit.release(0.001)
    assert adm.search_limit == 4  # 2 -> 2.5 -> 2.9 -> 3.24 -> 3.55 -> 3.83 -> 4.09, capped


def test_fast_searches_below_the_limit_do_not_grow_it() -> None:
    adm, _ = admission(search_limit_initial=4, search_limit_max=16)
    for _ in range(50):
        adm.try_acquire("search", "t").release(0.001)
    assert adm.search_limit == 4


def test_a_flooding_tenant_cannot_take_the_slots_kept_for_others() -> None:
    adm, _ = admission(search_limit_initial=8, search_limit_max=8, reserve=0.25)
    adm.try_acquire("search", "quiet").release(0.001)  # quiet is active too
    held = []
    with pytest.raises(Overloaded) as err:
        for _ in range(8):
            held.append(adm.try_acquire("search", "flood"))
    assert err.value.reason == "fairness"
    assert len(held) == 6  # 8 - ceil(8 * 0.25): two slots stay free
    adm.try_acquire("search", "quiet")
    adm.try_acquire("search", "quiet")


def test_a_lone_tenant_may_use_the_whole_limit() -> None:
    adm, _ = admission(search_limit_initial=4, search_limit_max=4)
    for _ in range(4):
        adm.try_acquire("search", "only")
    assert adm.inflight("search") == 4


def test_other_tenants_stop_counting_once_idle() -> None:
    adm, clock = admission(search_limit_initial=4, search_limit_max=4, active_window_s=1.0)
    adm.try_acquire("search", "gone").release(0.001)
    clock.t += 5
    for _ in range(4):
        adm.try_acquire("search", "flood")


def test_ingest_is_shed_while_searches_are_under_pressure() -> None:
    adm, clock = admission(
        search_limit_initial=1, search_limit_max=1, ingest_limit=2, pressure_window_s=0.25
    )
    for _ in range(30):  # a quiet history: 30 searches admitted
        adm.try_acquire("search", "t").release(0.001)
    s = adm.try_acquire("search", "t")
    adm.try_acquire("ingest", "t").release()  # a full limit alone is no pressure
    with pytest.raises(Overloaded):
        adm.try_acquire("search", "t")  # 1 refused in 32: under 10 %, no pressure yet
    adm.try_acquire("ingest", "t").release()
    for _ in range(3):
        with pytest.raises(Overloaded):
            adm.try_acquire("search", "t")  # 4 in 35: pressure
    with pytest.raises(Overloaded) as err:
        adm.try_acquire("ingest", "t")
    assert err.value.reason == "priority"
    s.release(0.001)
    clock.t += 0.6  # two windows on: forgotten
    adm.try_acquire("ingest", "t")
    adm.try_acquire("ingest", "t")
    with pytest.raises(Overloaded) as err:
        adm.try_acquire("ingest", "t")
    assert err.value.reason == "capacity"


def test_a_live_turns_store_is_not_shed_for_pressure_but_is_bounded() -> None:
    adm, _ = admission(search_limit_initial=1, search_limit_max=1, ingest_limit=1)
    adm.try_acquire("search", "t")
    with pytest.raises(Overloaded):
        adm.try_acquire("search", "t")  # pressure
    with pytest.raises(Overloaded):
        adm.try_acquire("ingest", "t")
    adm.try_acquire("ingest", "t", urgent=True)
    with pytest.raises(Overloaded) as err:
        adm.try_acquire("ingest", "t", urgent=True)
    assert err.value.reason == "capacity"


def test_check_refuses_like_acquire_and_takes_nothing() -> None:
    adm, _ = admission(search_limit_initial=1, search_limit_max=1)
    adm.check("search", "t")
    assert adm.inflight("search") == 0
    held = adm.try_acquire("search", "t")
    with pytest.raises(Overloaded):
        adm.check("search", "t")
    held.release(0.001)
    assert adm.inflight("search") == 0


def test_bad_params_fail_fast() -> None:
    with pytest.raises(ValueError, match="search_limit"):
        AdmissionParams(search_limit_initial=20, search_limit_max=10)
    with pytest.raises(ValueError, match="backoff"):
        AdmissionParams(backoff=1.5)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["acquire", "release"]),
            st.sampled_from(["search", "ingest", "other"]),
            st.sampled_from(["a", "b", "c"]),
            st.floats(0.0, 0.1),
        ),
        max_size=120,
    )
)
def test_in_flight_work_never_exceeds_the_limit_nor_goes_negative(ops) -> None:
    adm, clock = admission(search_limit_initial=3, search_limit_max=6, ingest_limit=2)
    held: list[Permit] = []
    for op, kind, tenant, latency in ops:
        clock.t += 0.01
        if op == "acquire":
            try:
                held.append(adm.try_acquire(kind, tenant))
            except Overloaded:
                pass
        elif held:
            held.pop(0).release(latency)
        for k in ("search", "ingest", "other"):
            assert 0 <= adm.inflight(k)
        assert adm.inflight("ingest") <= 2 and adm.inflight("other") <= 4
        assert adm.inflight("search") <= 6
        assert 1 <= adm.search_limit <= 6
    for permit in held:
        permit.release(None)
    assert all(adm.inflight(k) == 0 for k in ("search", "ingest", "other"))


def test_a_lagging_event_loop_shrinks_the_limit_and_stops_it_growing() -> None:
    lag = [0.0]
    clock = Clock()
    adm = Admission(
        AdmissionParams(search_limit_initial=4, search_limit_max=8, lag_target_s=0.004),
        clock=clock,
        lag=lambda: lag[0],
    )
    lag[0] = 0.010
    adm.try_acquire("search", "t").release(0.001)
    assert adm.search_limit == 3  # 4 * 0.9 = 3.6
    limits = []
    for _ in range(5):  # while the loop lags, the limit only shrinks (once per interval)
        clock.t += 0.06
        adm.try_acquire("search", "t").release(0.001)
        limits.append(adm.search_limit)
    assert limits == sorted(limits, reverse=True) and limits[-1] < 3
    lag[0] = 0.0
    low = adm.search_limit
    for _ in range(10):
        held = [adm.try_acquire("search", "t") for _ in range(adm.search_limit)]
        for permit in held:
            permit.release(0.001)
    assert adm.search_limit > low


def test_an_early_check_is_not_counted_as_an_admitted_search() -> None:
    adm, _ = admission(search_limit_initial=1, search_limit_max=1, pressure_window_s=10)
    for _ in range(9):  # each search looked at early, then admitted: 9 admitted, not 18
        adm.check("search", "t")
        adm.try_acquire("search", "t").release(0.001)
    held = adm.try_acquire("search", "t")
    with pytest.raises(Overloaded):
        adm.try_acquire("search", "t")  # 1 refused in 11: 9 % -- no pressure
    adm.try_acquire("ingest", "t").release()
    with pytest.raises(Overloaded):
        adm.check("search", "t")  # an early refusal counts: 2 in 12, pressure
    with pytest.raises(Overloaded) as err:
        adm.try_acquire("ingest", "t")
    assert err.value.reason == "priority"
    held.release(0.001)
