"""`ContextSession`: one live context stream, whatever carries it (WebSocket or gRPC).

The orchestrator sends each new turn of a live conversation. A turn with ``store`` is stored
first, with ingest's durability (``stored`` says so), in order, before the next message is
read: storing is the stream's back-pressure, so unstored turns never pile up. Then the turn
is handed to the session's one search worker, which pushes back what memory holds that is
relevant: the user's other conversations and the earlier parts of this one.

- The latest turn wins: while a search runs, newer turns replace each other in a single slot;
  the next event answers the newest and counts the ones passed over (``superseded``).
- The ``exclude_recent`` most recent turns of the stream are in the agent's prompt already
  and are never sent back, and neither is any memory sent before on this stream.
- Each search runs through the ``Gateway``: the budget counts from the turn's arrival, and a
  search the service cannot take is refused (an ``error`` event, code ``shed``) at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from pydantic import ValidationError

from indexer.errors import Conflict, IndexerError, IndexUnavailable, InvalidInput
from query_service.api_models import IngestBody, SearchBody, SearchFilters, UtteranceBody
from query_service.errors import DeadlineExceeded, Forbidden, Overloaded
from query_service.gateway import Gateway
from query_service.stream_models import (
    ContextEvent,
    ContextStart,
    ContextTurn,
    StoredEvent,
    StreamEvent,
    TurnError,
)

_log = logging.getLogger(__name__)
#: how many more candidates than ``k`` a search asks for, to fill ``k`` after exclusions
_OVERFETCH = 3
#: a turn of fewer words than this is searched together with the turn before it
_SHORT_TURN_WORDS = 4


class ContextSession:
    def __init__(
        self,
        *,
        gateway: Gateway,
        tenant: str,
        start: ContextStart,
        send: Callable[[StreamEvent], Awaitable[None]],
        transport: str,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._gateway = gateway
        self._tenant = tenant
        self._start = start
        self._send = send
        self._transport = transport
        self._now = now
        self._turns = 0
        self._recent: deque[str] = deque(maxlen=max(1, start.exclude_recent))
        self._previous_text: str | None = None
        self._sent: set[str] = set()
        self._pending: tuple[int, str, float] | None = None  # (turn, query, arrival)
        self._superseded = 0
        self._wake = asyncio.Event()
        self._closed = False
        self._worker = asyncio.create_task(self._search_loop(), name="convmem-context")

    @property
    def turns(self) -> int:
        return self._turns

    async def turn(self, turn: ContextTurn, *, arrival: float) -> None:
        """Take one turn: store it if asked (awaited), then schedule its search."""
        n = self._turns
        self._turns += 1
        uid = turn.utterance_id or f"{self._start.conversation_id}:stream:{n}"
        if turn.store:
            stored = await self._store(n, uid, turn)
            if not stored:
                return
        if self._start.exclude_recent:
            self._recent.append(uid)
        query = turn.text
        if len(turn.text.split()) < _SHORT_TURN_WORDS and self._previous_text:
            query = f"{self._previous_text} {turn.text}"
        self._previous_text = turn.text
        if self._pending is not None:
            self._superseded += 1
        self._pending = (n, query, arrival)
        self._wake.set()

    async def close(self) -> None:
        """Answer the turn still waiting, if any, then stop (each search is bounded by its
        budget, so this is soon); a worker that does not finish in time is cancelled."""
        self._closed = True
        self._wake.set()
        try:
            await asyncio.wait_for(
                asyncio.shield(self._worker), timeout=2 * self._start.budget_ms / 1000 + 1.0
            )
        except (TimeoutError, asyncio.CancelledError):
            self._worker.cancel()

    async def _store(self, n: int, uid: str, turn: ContextTurn) -> bool:
        s = self._start
        try:
            body = IngestBody(
                utterances=[
                    UtteranceBody(
                        id=uid,
                        conversation_id=s.conversation_id,
                        speaker=turn.speaker,
                        role=turn.role,
                        text=turn.text,
                        started_at=turn.started_at or self._now(),
                        user_id=s.user_id,
                        agent_id=s.agent_id,
                    )
                ]
            )
            result = await self._gateway.ingest(
                self._tenant, body, transport=self._transport, urgent=True
            )
        except Overloaded as exc:
            await self._error(n, "shed", f"not stored: {exc}", exc.retry_after_s)
            return False
        except InvalidInput as exc:
            await self._error(n, "invalid", f"not stored: {exc}")
            return False
        except ValidationError as exc:  # the id made of a 256-character conversation id
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "turn"
            await self._error(n, "invalid", f"not stored: utterance {where}: {err['msg']}")
            return False
        except Forbidden as exc:
            await self._error(n, "forbidden", f"not stored: {exc}")
            return False
        except Conflict as exc:  # the conversation is another user's: a retry cannot help
            await self._error(n, "invalid", f"not stored: {exc}")
            return False
        except IndexerError as exc:
            await self._error(n, "unavailable", f"not stored: {exc}", 1.0)
            return False
        await self._send(StoredEvent(turn=n, utterance_id=uid, seq=result.seq))
        return True

    async def _search_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            pending, self._pending = self._pending, None
            if pending is None:
                if self._closed:
                    return
                continue
            superseded, self._superseded = self._superseded, 0
            try:
                await self._answer(*pending, superseded=superseded)
            except Exception:  # noqa: BLE001 - one failed turn must not end the stream
                _log.exception("context stream: a turn's search failed")
                await self._error(pending[0], "internal", "the search failed")
            if self._closed and self._pending is None:
                return

    async def _answer(self, n: int, query: str, arrival: float, *, superseded: int) -> None:
        s = self._start
        excluded = set(self._recent) if s.exclude_recent else set()
        filters = (
            SearchFilters(user_id=s.user_id)
            if s.user_id is not None
            else SearchFilters(conversation_id=s.conversation_id)
        )
        k = min(100, s.k + len(excluded) + _OVERFETCH * s.k)
        body = SearchBody(query=query[:2000], k=k, filters=filters, budget_ms=s.budget_ms)
        try:
            result = await self._gateway.search(
                self._tenant, body, arrival=arrival, transport=self._transport
            )
        except Overloaded as exc:
            await self._error(n, "shed", str(exc), exc.retry_after_s)
            return
        except DeadlineExceeded as exc:
            await self._error(n, "deadline", str(exc))
            return
        except IndexUnavailable as exc:
            await self._error(n, "unavailable", str(exc), 1.0)
            return
        fresh = [
            h
            for h in result.hits
            if h.utterance_id not in excluded and h.utterance_id not in self._sent
        ][: s.k]
        self._sent.update(h.utterance_id for h in fresh)
        await self._send(
            ContextEvent(
                turn=n,
                hits=fresh,
                timings_ms=result.timings_ms,
                degraded=result.degraded,
                superseded=superseded,
                index_seq=result.index_seq,
            )
        )

    async def _error(
        self, n: int | None, code: str, message: str, retry_after_s: float | None = None
    ) -> None:
        await self._send(
            TurnError(
                turn=n,
                code=code,  # type: ignore[arg-type]  # one of the Literal's codes
                message=message,
                retry_after_ms=None if retry_after_s is None else round(retry_after_s * 1000),
            )
        )
