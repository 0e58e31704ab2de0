"""The store-fault scenario (``eval.store_outage``): load on a running service while its
PostgreSQL is stopped, started again, then locked.

Three streams run for the whole scenario, each recording every request with the time it
was sent and answered (``time.monotonic``, the event loop's clock):

- open-loop Poisson searches (``eval.loadgen``), scoped hybrid, the 50 ms default budget; a
  share ask for ``min_seq`` = the newest acknowledged write (read-your-writes, ``ryw``) and a
  share for one past it (``ahead``: a write another replica made that this index has not
  seen, met only if the next write lands within the budget), the rest ask for none (``plain``);
- open-loop ingest batches with fresh ids (httpx, to see ``Retry-After``);
- ``/readyz`` every 100 ms.

Meanwhile the scenario stops PostgreSQL (``pg_ctl stop``), keeps it down, starts it again,
and later holds ``LOCK TABLE utterances IN ACCESS EXCLUSIVE MODE`` in an open transaction,
which every write and the change feed's reads wait behind. ``outage_report`` turns the
records into figures.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from eval.loadgen import HttpPool, open_loop, poisson_arrivals
from eval.pg_control import PgControl, StopMode

SEARCH_TIMEOUT_S = 2.0
WRITE_TIMEOUT_S = 30.0
READYZ_EVERY_S = 0.1


@dataclass(frozen=True)
class Plan:
    """Phase lengths (seconds) and load; the scenario lasts their sum."""

    baseline_s: float = 10.0
    down_s: float = 10.0
    after_s: float = 10.0
    lock_s: float = 10.0
    tail_s: float = 10.0
    search_rps: float = 40.0
    write_rps: float = 5.0
    batch: int = 5
    users: int = 100
    ryw_share: float = 0.2
    ahead_share: float = 0.1
    stop_mode: StopMode = "fast"
    seed: int = 0

    @property
    def total_s(self) -> float:
        return self.baseline_s + self.down_s + self.after_s + self.lock_s + self.tail_s


@dataclass
class Call:
    """One request: sent and answered (monotonic s; answered None = no answer in time)."""

    sent: float
    kind: str
    answered: float | None = None
    status: int = 0
    stale: bool = False
    retry_after: str | None = None
    reason: str | None = None  # a 429's reason (capacity, fairness, priority, ...)
    problem_json: bool = False
    ids: list[str] = field(default_factory=list)
    seq: int | None = None


@dataclass
class Events:
    """When each fault began and ended (monotonic s)."""

    start: float = 0.0
    stop_begin: float = 0.0
    down: float = 0.0
    start_begin: float = 0.0
    back: float = 0.0
    lock_begin: float = 0.0
    locked: float = 0.0
    unlocked: float = 0.0
    end: float = 0.0


@dataclass
class Records:
    events: Events
    searches: list[Call]
    writes: list[Call]
    readyz: list[Call]
    final_index_seq: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Scenario:
    """Run ``plan`` against the service at ``host:port``, whose PostgreSQL ``control`` runs."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        control: PgControl,
        queries: Sequence[str],
        plan: Plan,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._host, self._port = host, port
        self._control = control
        self._queries = queries
        self._plan = plan
        self._clock = clock
        self._acked_seq = 0
        self._rng = np.random.default_rng(plan.seed)

    async def run(self) -> Records:
        import httpx

        plan, now = self._plan, self._clock
        events = Events(start=now())
        searches: dict[int, Call] = {}
        writes: dict[int, Call] = {}
        readyz: list[Call] = []
        pool = HttpPool(self._host, self._port, size=64, headers={})
        base = f"http://{self._host}:{self._port}"
        kinds = self._rng.choice(
            ["plain", "ryw", "ahead"],
            size=int(plan.search_rps * plan.total_s * 2) + 64,
            p=[1 - plan.ryw_share - plan.ahead_share, plan.ryw_share, plan.ahead_share],
        )
        async with httpx.AsyncClient(base_url=base, timeout=WRITE_TIMEOUT_S) as http:

            async def search(i: int) -> tuple[int, bool]:
                call = searches[i] = Call(sent=now(), kind=str(kinds[i % len(kinds)]))
                body: dict[str, Any] = {
                    "query": self._queries[i % len(self._queries)],
                    "k": 10,
                    "filters": {"user_id": f"user-{i % plan.users}"},
                }
                if call.kind != "plain":
                    body["min_seq"] = self._acked_seq + (call.kind == "ahead")
                status, data = await pool.post("/v1/search", body)
                call.answered, call.status = now(), status
                call.stale = status == 200 and "stale_index" in data.get("degraded", [])
                call.reason = data.get("reason") if status == 429 else None
                return status, bool(data.get("degraded")) if status == 200 else False

            async def write(i: int) -> tuple[int, bool]:
                ids = [f"w-{i}-{j}" for j in range(plan.batch)]
                call = writes[i] = Call(sent=now(), kind="write", ids=ids)
                conv = i % 40
                batch = [
                    {
                        "id": uid,
                        "conversation_id": f"w-conv-{conv}",
                        "user_id": f"user-{conv % plan.users}",
                        "speaker": "Caller",
                        "role": "user",
                        "text": f"outage writer note {uid} {self._queries[i % len(self._queries)]}",
                        "started_at": f"2026-06-01T00:{i // 60 % 60:02d}:{i % 60:02d}+00:00",
                    }
                    for uid in ids
                ]
                try:
                    resp = await http.post("/v1/utterances", json={"utterances": batch})
                except httpx.HTTPError:
                    return 0, False  # no answer: stays status 0
                call.answered, call.status = now(), resp.status_code
                call.retry_after = resp.headers.get("retry-after")
                call.problem_json = resp.headers.get("content-type", "").startswith(
                    "application/problem+json"
                )
                if resp.status_code == 429:
                    call.reason = resp.json().get("reason")
                if resp.status_code == 200:
                    call.seq = int(resp.json()["seq"])
                    self._acked_seq = max(self._acked_seq, call.seq)
                return resp.status_code, False

            async def poll_readyz(until: asyncio.Event) -> None:
                while not until.is_set():
                    call = Call(sent=now(), kind="readyz")
                    readyz.append(call)
                    try:
                        resp = await http.get("/readyz", timeout=5.0)
                        call.answered, call.status = now(), resp.status_code
                    except httpx.HTTPError:
                        pass
                    await asyncio.sleep(READYZ_EVERY_S)

            span = plan.total_s
            loads = asyncio.gather(
                open_loop(
                    poisson_arrivals(plan.search_rps, span, self._rng), search, SEARCH_TIMEOUT_S
                ),
                open_loop(
                    poisson_arrivals(plan.write_rps, span, self._rng), write, WRITE_TIMEOUT_S
                ),
            )
            done = asyncio.Event()
            poller = asyncio.create_task(poll_readyz(done))
            await self._faults(events)
            await loads
            done.set()
            await poller
            events.end = now()
            final = await http.get("/readyz")
            index_seq = final.json().get("index_seq") if final.status_code == 200 else None
        await pool.aclose()
        return Records(
            events=events,
            searches=[searches[i] for i in sorted(searches)],
            writes=[writes[i] for i in sorted(writes)],
            readyz=readyz,
            final_index_seq=index_seq,
        )

    async def _faults(self, ev: Events) -> None:
        """Stop, keep down, start; later lock the utterances table for ``lock_s``."""
        plan, now = self._plan, self._clock
        await _sleep_until(ev.start + plan.baseline_s, now)
        ev.stop_begin = now()
        await asyncio.to_thread(self._control.stop, plan.stop_mode)
        ev.down = now()
        await _sleep_until(ev.start + plan.baseline_s + plan.down_s, now)
        ev.start_begin = now()
        await asyncio.to_thread(self._control.start)
        ev.back = now()
        await _sleep_until(ev.back + plan.after_s, now)
        ev.lock_begin = now()
        await asyncio.to_thread(self._hold_lock, ev)

    def _hold_lock(self, ev: Events) -> None:
        import psycopg

        with psycopg.connect(self._control.url()) as conn:  # a transaction until rollback
            conn.execute("LOCK TABLE utterances IN ACCESS EXCLUSIVE MODE")
            ev.locked = self._clock()
            time.sleep(self._plan.lock_s)
            conn.rollback()
            ev.unlocked = self._clock()


async def _sleep_until(t: float, now: Callable[[], float]) -> None:
    delay = t - now()
    if delay > 0:
        await asyncio.sleep(delay)
