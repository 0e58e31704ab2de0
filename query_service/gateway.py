"""`Gateway`: the async front door that every transport calls.

REST, gRPC and the WebSockets parse their wire format into the API models and call this. It
holds what they would otherwise each repeat: the deadline, counted from the call's arrival;
the tenant's rate limit (``rate_limit``: a search costs 1, an ingest its utterances), then
admission control (refuse at once, never queue); running the blocking operation off the event
loop on its class's thread pool; the tenant's cap on open sessions (``sessions``, for the
streams); and the outcome and latency for ``/metrics``.

A permit is released by the worker thread when the operation ends, not when the caller stops
waiting: a client that disconnects mid-call frees its slot only once the work is done, so the
bound on in-flight work holds. Searches are bounded by their own deadline, so that is soon.
Work not yet started when its caller gives up is dropped, and its slot given back then.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from indexer.errors import IndexUnavailable, InvalidInput, NotFound
from query_service.admission import KINDS, Admission, Kind
from query_service.api_models import (
    ConversationBody,
    ConversationResponse,
    DeleteResponse,
    IngestBody,
    IngestResponse,
    SearchBody,
    SearchResponse,
)
from query_service.auth import Authenticator, can_write
from query_service.deadline import Deadline
from query_service.errors import DeadlineExceeded, Forbidden, Overloaded, Unauthorized
from query_service.memory_service import MemoryService
from query_service.metrics import Metrics
from query_service.rate_limit import RateClass, RateLimiter
from query_service.sessions import SessionSlot, SessionSlots

T = TypeVar("T")
R = TypeVar("R")
#: a search with less than this left of its budget at admission is not started
MIN_START_S = 0.002
#: the classes of work a tenant's rate limit counts (reads and deletes are not rate limited)
_RATED: dict[Kind, RateClass] = {"search": "search", "ingest": "ingest"}


class Gateway:
    def __init__(
        self,
        *,
        admission: Admission,
        metrics: Metrics,
        auth: Authenticator,
        rates: RateLimiter | None = None,
        sessions: SessionSlots | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``rates``, ``sessions``: None is their default limits (``RateLimits()``,
        ``SessionLimits()``)."""
        self.admission = admission
        self.metrics = metrics
        self.auth = auth
        self.rates = RateLimiter() if rates is None else rates
        self.sessions = SessionSlots() if sessions is None else sessions
        self._clock = clock
        self._memory: MemoryService | None = None
        self._starting = "the service is starting: the index is being loaded"
        self._pools = {
            kind: ThreadPoolExecutor(
                max_workers=(
                    admission.params.search_limit_max
                    if kind == "search"
                    else admission.limit_of(kind)
                ),
                thread_name_prefix=f"convmem-{kind}",
            )
            for kind in KINDS
        }

    # -- lifecycle -------------------------------------------------------------------------
    def attach(self, memory: MemoryService) -> None:
        self._memory = memory

    def startup_failed(self, reason: str) -> None:
        self._starting = reason

    @property
    def memory(self) -> MemoryService:
        """The operations; IndexUnavailable (503) until the services are built."""
        if self._memory is None:
            raise IndexUnavailable(self._starting)
        return self._memory

    @property
    def ready(self) -> bool:
        return self._memory is not None

    def close(self) -> None:
        for pool in self._pools.values():
            pool.shutdown(wait=False, cancel_futures=True)

    def now(self) -> float:
        """The gateway's clock: transports stamp a call's arrival with it."""
        return self._clock()

    def tenant(self, authorization: str | None) -> str:
        return self.auth.tenant_for(authorization)

    def check(
        self, kind: Kind, tenant: str, *, transport: str, arrival: float | None = None
    ) -> None:
        """Raise ``Overloaded`` if a call of ``kind`` would be refused now (the tenant's rate,
        then admission): the cheap early look before a request is read. Takes nothing; a
        refusal is counted in the metrics (from ``arrival``, if known)."""
        rated = _RATED.get(kind)
        try:
            if rated is not None:
                self.rates.check(rated, tenant)
            self.admission.check(kind, tenant)
        except Overloaded as exc:
            took = None if arrival is None else self._clock() - arrival
            self.metrics.refused(transport, kind, exc.reason, took)
            raise

    def open_session(self, tenant: str, *, transport: str, op: str) -> SessionSlot:
        """A slot for one live stream (``with`` it), or ``Overloaded`` (reason ``sessions``)."""
        try:
            return self.sessions.acquire(tenant)
        except Overloaded as exc:
            self.metrics.refused(transport, op, exc.reason, None)
            raise

    # -- operations ------------------------------------------------------------------------
    async def search(
        self,
        tenant: str,
        body: SearchBody,
        *,
        arrival: float,
        transport: str,
        deadline_s: float | None = None,
    ) -> SearchResponse:
        """Search within ``budget_ms`` (or the caller's deadline, if sooner), from arrival."""
        return await self.search_as(
            tenant, body, _same, arrival=arrival, transport=transport, deadline_s=deadline_s
        )

    async def search_as(
        self,
        tenant: str,
        body: SearchBody,
        render: Callable[[SearchResponse], R],
        *,
        arrival: float,
        transport: str,
        deadline_s: float | None = None,
    ) -> R:
        """``search``, with the answer put in the transport's wire form by ``render`` on the
        worker thread: serialising ten hits with their context is a millisecond that would
        otherwise be spent on the event loop, which every other request is waiting for."""
        budget_s = body.budget_ms / 1000.0
        if deadline_s is not None:
            budget_s = min(budget_s, deadline_s)
        deadline = Deadline(at=arrival + budget_s, clock=self._clock)
        memory = self.memory
        if deadline.remaining() < MIN_START_S:
            self.metrics.request(transport, "search", "error", self._clock() - arrival)
            waited = (self._clock() - arrival) * 1000
            raise DeadlineExceeded(
                f"the budget ran out before the search could start ({waited:.1f} ms after arrival)"
            )
        degraded = [False]

        def op() -> R:
            response = memory.search(tenant, body, deadline)
            degraded[0] = bool(response.degraded)
            return render(response)

        return await self._run(
            "search",
            tenant,
            op,
            arrival,
            transport,
            degraded=lambda: degraded[0],
            abandon=deadline.abandon,
        )

    async def ingest(
        self,
        tenant: str,
        body: IngestBody,
        *,
        transport: str,
        arrival: float | None = None,
        urgent: bool = False,
    ) -> IngestResponse:
        """``urgent``: a live turn's store, not shed for search pressure (``admission``)."""
        memory = self.memory
        return await self._run(
            "ingest",
            tenant,
            lambda: memory.ingest(tenant, body),
            arrival,
            transport,
            urgent=urgent,
            write=True,
            cost=len(body.utterances),
        )

    async def put_conversation(
        self, tenant: str, conversation_id: str, body: ConversationBody, *, transport: str
    ) -> DeleteResponse:
        memory = self.memory
        return await self._run(
            "other",
            tenant,
            lambda: memory.put_conversation(tenant, conversation_id, body),
            None,
            transport,
            op="put_conversation",
            write=True,
        )

    async def get_conversation(
        self, tenant: str, conversation_id: str, *, transport: str
    ) -> ConversationResponse:
        memory = self.memory
        return await self._run(
            "other",
            tenant,
            lambda: memory.get_conversation(tenant, conversation_id),
            None,
            transport,
            op="get_conversation",
        )

    async def delete(self, tenant: str, what: str, ident: str, *, transport: str) -> DeleteResponse:
        """Forget a ``conversation``, an ``utterance`` or a ``user`` (idempotent)."""
        memory = self.memory
        ops: dict[str, Callable[[str, str], DeleteResponse]] = {
            "conversation": memory.delete_conversation,
            "utterance": memory.delete_utterance,
            "user": memory.delete_user,
        }
        if what not in ops:
            raise InvalidInput(f"cannot delete a {what!r}")
        op = ops[what]
        return await self._run(
            "other",
            tenant,
            lambda: op(tenant, ident),
            None,
            transport,
            op=f"delete_{what}",
            write=True,
        )

    # -- the one way work runs -------------------------------------------------------------
    async def _run(
        self,
        kind: Kind,
        tenant: str,
        fn: Callable[[], T],
        arrival: float | None,
        transport: str,
        *,
        op: str | None = None,
        urgent: bool = False,
        degraded: Callable[[], bool] | None = None,
        write: bool = False,
        abandon: Callable[[], None] | None = None,
        cost: int = 1,
    ) -> T:
        """Run ``fn`` on ``kind``'s pool under an admission permit, once the tenant's rate
        allows ``cost`` (given back if admission then refuses). ``abandon`` is called when
        the caller stops waiting while ``fn`` already runs (it cannot be cancelled): it should
        make ``fn`` finish early, so that its slot comes back now, not at its deadline."""
        op = op or kind
        if write and not can_write(tenant):
            raise Forbidden("this API key is read-only: it may search and read, not write")
        start = self._clock() if arrival is None else arrival
        rated = _RATED.get(kind)
        try:
            if rated is not None:
                self.rates.take(rated, tenant, cost)
            try:
                permit = self.admission.try_acquire(kind, tenant, urgent=urgent)
            except Overloaded:
                if rated is not None:
                    self.rates.give_back(rated, tenant, cost)
                raise
        except Overloaded as exc:
            self.metrics.refused(transport, op, exc.reason, self._clock() - start)
            raise
        outcome: list[str] = ["error"]
        gone = [False]  # the caller stopped waiting: this run's latency says nothing of capacity

        def work() -> T:
            latency: float | None = None
            try:
                out = fn()
                latency = self._clock() - start
                outcome[0] = "degraded" if degraded is not None and degraded() else "ok"
                return out
            except (InvalidInput, NotFound, Unauthorized):
                outcome[0] = "ok"  # the client's mistake, answered correctly
                latency = self._clock() - start
                raise
            finally:
                permit.release(None if gone[0] else latency)
                self.metrics.request(transport, op, outcome[0], self._clock() - start)  # type: ignore[arg-type]  # one of Outcome

        future = self._pools[kind].submit(work)

        def dropped(f: Future[T]) -> None:
            # A caller that stops waiting (a disconnect, a cancelled call) cancels work not yet
            # started: it is dropped, and its slot must come back, as ``work`` never runs.
            if f.cancelled():
                permit.release(None)
                self.metrics.request(transport, op, "error", None)

        future.add_done_callback(dropped)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            gone[0] = True
            if abandon is not None:
                abandon()
            raise


def _same(response: SearchResponse) -> SearchResponse:
    return response
