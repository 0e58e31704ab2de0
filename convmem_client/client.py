"""`Client`: the REST API, synchronously, over one pooled ``httpx.Client``.

>>> with Client("http://127.0.0.1:8080", api_key="...") as memory:
...     ack = memory.ingest([Utterance(...)])
...     result = memory.search("what am I allergic to", user_id="maya", min_seq=ack.seq)

Idempotent calls (ingest, search, reads, deletes) are retried under the ``RetryPolicy`` on
429, 502, 503, 504 and on no answer at all; ``put_conversation`` only when asked. A delete
is idempotent in effect, not in answer: deleting what is gone is ``NotFound``, so a retry
after an answer was lost (a timeout) can raise ``NotFound`` for a delete that succeeded.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import TypeVar

import httpx

from convmem_client import _rest
from convmem_client._rest import DEFAULT_URL, Call, headers_for
from convmem_client.errors import ConvmemError, Unavailable
from convmem_client.models import (
    IngestResult,
    Mode,
    SearchResult,
    Transcript,
    UtteranceInput,
    WriteResult,
)
from convmem_client.retry import RetryPolicy, next_delay

T = TypeVar("T")


class Client:
    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        rng: Callable[[], float] = random.random,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``timeout`` bounds each attempt, in seconds; ``transport`` replaces the network
        (``httpx.MockTransport`` in tests); ``rng`` and ``sleep`` drive the back-off."""
        self._http = httpx.Client(
            base_url=base_url, headers=headers_for(api_key), timeout=timeout, transport=transport
        )
        self._url = base_url
        self._retry = retry or RetryPolicy()
        self._rng = rng
        self._sleep = sleep

    # -- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the API ---------------------------------------------------------------------------
    def ingest(self, utterances: Iterable[UtteranceInput]) -> IngestResult:
        """Store a batch (at most 1,000) durably. Idempotent by utterance id, so retried."""
        return self._send(_rest.ingest(utterances))

    def search(
        self,
        query: str,
        *,
        k: int = 10,
        mode: Mode = "hybrid",
        user_id: str | None = None,
        conversation_id: str | Sequence[str] | None = None,
        speaker: str | Sequence[str] | None = None,
        role: str | Sequence[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        budget_ms: float | None = None,
        min_seq: int | None = None,
        reference_time: datetime | None = None,
    ) -> SearchResult:
        """Search within ``budget_ms`` (the service's default: 50). With ``min_seq`` (an
        ingest's ``seq``) the answer says ``stale_index`` in ``degraded`` until the index has
        caught up with it."""
        return self._send(
            _rest.search(
                query,
                k=k,
                mode=mode,
                user_id=user_id,
                conversation_id=conversation_id,
                speaker=speaker,
                role=role,
                since=since,
                until=until,
                budget_ms=budget_ms,
                min_seq=min_seq,
                reference_time=reference_time,
            )
        )

    def put_conversation(
        self,
        conversation_id: str,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        started_at: datetime | None = None,
        metadata: Mapping[str, str] | None = None,
        retry: bool = False,
    ) -> WriteResult:
        """Create a conversation or set its owner and agent: an upsert of the whole record.

        Sending the same one twice leaves the same state, so ``retry=True`` is safe for a
        caller that is the conversation's only writer; by default it is not retried, because
        a retry that lands after another writer's change (or delete) would undo it."""
        return self._send(
            _rest.put_conversation(
                conversation_id,
                user_id=user_id,
                agent_id=agent_id,
                started_at=started_at,
                metadata=metadata,
                idempotent=retry,
            )
        )

    def get_transcript(self, conversation_id: str) -> Transcript:
        return self._send(_rest.get_transcript(conversation_id))

    def delete_conversation(self, conversation_id: str) -> WriteResult:
        return self._send(_rest.delete("conversations", conversation_id))

    def delete_utterance(self, utterance_id: str) -> WriteResult:
        return self._send(_rest.delete("utterances", utterance_id))

    def delete_user(self, user_id: str) -> WriteResult:
        """Forget a user's whole memory."""
        return self._send(_rest.delete("users", user_id))

    def ready(self) -> bool:
        """``GET /readyz``: True when ready, False while starting (503); not retried."""
        return self._not_ready() is None

    def wait_ready(self, timeout_s: float = 60.0, *, interval_s: float = 0.1) -> None:
        """Poll ``/readyz`` (through connection errors) until ready; Unavailable on timeout."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                reason = self._not_ready()
            except ConvmemError as exc:
                reason = str(exc)
            if reason is None:
                return
            if time.monotonic() >= deadline:
                raise Unavailable(503, "Not ready", f"after {timeout_s:g} s: {reason}")
            self._sleep(interval_s)

    def _not_ready(self) -> str | None:
        """None when ready, else why not."""
        try:
            resp = self._http.get("/readyz")
        except httpx.HTTPError as exc:
            raise _rest.transport_error(exc, self._url) from exc
        if resp.status_code == 503:
            return _rest.error_of(resp).detail
        if resp.status_code >= 400:
            raise _rest.error_of(resp)
        return None

    # -- one call, retried -----------------------------------------------------------------
    def _send(self, call: Call[T]) -> T:
        attempt = 0
        while True:
            try:
                return self._once(call)
            except ConvmemError as exc:
                wait = next_delay(
                    self._retry,
                    attempt,
                    exc,
                    idempotent=call.idempotent,
                    retryable=_rest.retryable,
                    rng=self._rng,
                )
                if wait is None:
                    raise
            self._sleep(wait)
            attempt += 1

    def _once(self, call: Call[T]) -> T:
        try:
            resp = self._http.request(call.method, call.path, json=call.body)
        except httpx.HTTPError as exc:
            raise _rest.transport_error(exc, self._url) from exc
        return _rest.decode(resp, call)
