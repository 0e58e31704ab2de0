"""`AsyncGrpcClient`: the gRPC API (``convmem.v1.Memory``) on ``grpc.aio``, over one channel.

>>> async with AsyncGrpcClient("127.0.0.1:50051", api_key="...") as memory:
...     result = await memory.search("what am I allergic to", user_id="maya", timeout=0.2)
...     async for event in memory.converse(turns, conversation_id="c1", user_id="maya"):
...         ...

Build it inside the event loop that uses it (grpc.aio binds a channel to its loop). The same
calls, results, errors and retries as ``GrpcClient``, plus ``converse``, the live context
stream. ``timeout`` is the deadline of
the whole call, retries and their waits included (gRPC's meaning: the service also takes it as
the search budget); idempotent calls are retried on RESOURCE_EXHAUSTED (after the
``retry-after-ms`` trailer) and UNAVAILABLE while the deadline allows.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from datetime import datetime
from types import TracebackType
from typing import TypeVar

import grpc
from grpc_health.v1 import health_pb2_grpc

from convmem_client import _grpc, converse
from convmem_client._grpc import DEFAULT_TARGET, Call
from convmem_client.converse import ConverseEvent, LiveTurn
from convmem_client.errors import ConvmemError, DeadlineExceeded, Unavailable
from convmem_client.models import (
    IngestResult,
    Mode,
    SearchResult,
    Transcript,
    UtteranceInput,
    WriteResult,
)
from convmem_client.retry import RetryPolicy, next_delay
from query_service.grpc_gen import memory_pb2_grpc as pb_grpc

T = TypeVar("T")


class AsyncGrpcClient:
    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        api_key: str | None = None,
        timeout: float | None = 10.0,
        retry: RetryPolicy | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        max_message_bytes: int = 4 * 1024 * 1024,
        rng: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``target``: ``host:port``; ``credentials``: TLS (default: plaintext); ``timeout``:
        the default deadline of a call, in seconds (None: none)."""
        options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ]
        if credentials is None:
            self._channel = grpc.aio.insecure_channel(target, options=options)
        else:
            self._channel = grpc.aio.secure_channel(target, credentials, options=options)
        self._stub = pb_grpc.MemoryStub(self._channel)  # type: ignore[no-untyped-call]  # generated
        self._health = health_pb2_grpc.HealthStub(self._channel)
        self._target = target
        self._metadata = _grpc.metadata_for(api_key)
        self._timeout = timeout
        self._retry = retry or RetryPolicy()
        self._rng = rng
        self._sleep = sleep
        self._clock = clock

    # -- lifecycle -------------------------------------------------------------------------
    async def aclose(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncGrpcClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- the API ---------------------------------------------------------------------------
    async def ingest(
        self, utterances: Iterable[UtteranceInput], *, timeout: float | None = None
    ) -> IngestResult:
        """Store a batch (at most 1,000) durably. Idempotent by utterance id, so retried."""
        return await self._send(_grpc.ingest(utterances), timeout)

    async def search(
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
        timeout: float | None = None,
    ) -> SearchResult:
        """Search within ``budget_ms`` and the call's deadline, whichever ends first."""
        call = _grpc.search(
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
        return await self._send(call, timeout)

    async def put_conversation(
        self,
        conversation_id: str,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        started_at: datetime | None = None,
        metadata: Mapping[str, str] | None = None,
        retry: bool = False,
        timeout: float | None = None,
    ) -> WriteResult:
        """An upsert of the whole record; retried only with ``retry=True`` (see
        ``Client.put_conversation``: safe for the conversation's only writer)."""
        call = _grpc.put_conversation(
            conversation_id,
            user_id=user_id,
            agent_id=agent_id,
            started_at=started_at,
            metadata=metadata,
            idempotent=retry,
        )
        return await self._send(call, timeout)

    async def get_transcript(
        self, conversation_id: str, *, timeout: float | None = None
    ) -> Transcript:
        return await self._send(_grpc.get_transcript(conversation_id), timeout)

    async def delete_conversation(
        self, conversation_id: str, *, timeout: float | None = None
    ) -> WriteResult:
        return await self._send(_grpc.delete_conversation(conversation_id), timeout)

    async def delete_utterance(
        self, utterance_id: str, *, timeout: float | None = None
    ) -> WriteResult:
        return await self._send(_grpc.delete_utterance(utterance_id), timeout)

    async def delete_user(self, user_id: str, *, timeout: float | None = None) -> WriteResult:
        """Forget a user's whole memory."""
        return await self._send(_grpc.delete_user(user_id), timeout)

    async def ready(self, *, timeout: float | None = None) -> bool:
        """``grpc.health.v1`` for ``convmem.v1.Memory``: True when SERVING; not retried."""
        try:
            response = await self._health.Check(
                _grpc.health_request(), timeout=self._budget(timeout), metadata=self._metadata
            )
        except grpc.RpcError as exc:
            raise _grpc.error_of(exc, self._target) from exc
        return _grpc.serving(response)

    async def wait_ready(self, timeout_s: float = 60.0, *, interval_s: float = 0.1) -> None:
        """Poll ``ready()`` (through connection errors) until True; Unavailable on timeout."""
        deadline = self._clock() + timeout_s
        last = "not serving"
        while True:
            try:
                if await self.ready(timeout=max(0.05, min(1.0, deadline - self._clock()))):
                    return
            except ConvmemError as exc:
                last = str(exc)
            if self._clock() >= deadline:
                raise Unavailable(503, "UNAVAILABLE", f"not ready after {timeout_s:g} s: {last}")
            await self._sleep(interval_s)

    async def converse(
        self,
        turns: AsyncIterable[LiveTurn] | Iterable[LiveTurn],
        *,
        conversation_id: str,
        user_id: str | None = None,
        agent_id: str | None = None,
        k: int | None = None,
        budget_ms: float | None = None,
        exclude_recent: int | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[ConverseEvent]:
        """The live context stream: sends ``turns`` as they come, yields events as they are
        ready, and ends once ``turns`` is exhausted and the service has answered them.

        ``user_id``: whose memory is searched (None: this conversation only); ``k``,
        ``budget_ms``, ``exclude_recent`` (the recent turns the agent holds, never sent
        back): None for the service's defaults (5, 50 ms, 4). ``timeout``: a deadline for
        the whole stream (default: none). Not retried; leaving the loop cancels the call."""
        start = converse.start_request(
            conversation_id,
            user_id=user_id,
            agent_id=agent_id,
            k=k,
            budget_ms=budget_ms,
            exclude_recent=exclude_recent,
        )

        async def requests() -> AsyncIterator[object]:
            yield start
            if isinstance(turns, AsyncIterable):
                async for t in turns:
                    yield converse.turn_request(t)
            else:
                for t in turns:
                    yield converse.turn_request(t)

        call = self._stub.Converse(requests(), timeout=timeout, metadata=self._metadata)
        try:
            async for message in call:
                yield converse.event(message)
        except grpc.RpcError as exc:
            raise _grpc.error_of(exc, self._target) from exc
        finally:
            call.cancel()

    # -- one call, retried within its deadline ---------------------------------------------
    def _budget(self, timeout: float | None) -> float | None:
        return self._timeout if timeout is None else timeout

    async def _send(self, call: Call[T], timeout: float | None) -> T:
        budget = self._budget(timeout)
        deadline = None if budget is None else self._clock() + budget
        rpc = getattr(self._stub, call.method)
        attempt = 0
        while True:
            left = None if deadline is None else deadline - self._clock()
            if left is not None and left <= 0:
                raise DeadlineExceeded(504, "DEADLINE_EXCEEDED", f"{budget:g} s passed")
            try:
                return call.decode(await rpc(call.request, timeout=left, metadata=self._metadata))
            except grpc.RpcError as exc:
                error = _grpc.error_of(exc, self._target)
                wait = self._wait(call, attempt, error, deadline)
                if wait is None:
                    raise error from exc
            await self._sleep(wait)
            attempt += 1

    def _wait(
        self, call: Call[T], attempt: int, error: ConvmemError, deadline: float | None
    ) -> float | None:
        wait = next_delay(
            self._retry,
            attempt,
            error,
            idempotent=call.idempotent,
            retryable=_grpc.retryable,
            rng=self._rng,
        )
        if wait is not None and deadline is not None and self._clock() + wait >= deadline:
            return None  # the retry could not end before the deadline
        return wait
