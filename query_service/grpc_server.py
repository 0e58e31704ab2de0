"""`GrpcServer`: the ``convmem.v1.Memory`` service over ``grpc.aio``, beside REST.

A companion of ``create_app``: it starts on the app's event loop with the app's ``Gateway``,
so gRPC calls share admission control, deadlines and metrics with REST. Each RPC is a thin
adapter: the tenant from the ``authorization`` metadata, the request converted into the API
models (``grpc_mapping``, which validates it), one gateway call, the answer converted back.

- Deadlines: a call's arrival is the gateway's clock at method entry; its remaining deadline
  bounds the search budget. A deadline already passed on arrival is DEADLINE_EXCEEDED.
- ``grpc.health.v1``: NOT_SERVING until the services are built (the index loaded and caught
  up), then SERVING, for ``""`` and ``convmem.v1.Memory``, as REST's ``/readyz/serving``: a
  store outage leaves searches answered from the index, so it does not take the server out
  of a load balancer's rotation (writes are UNAVAILABLE meanwhile). Reflection lists both.
- Messages over ``max_message_bytes`` are refused by gRPC itself (RESOURCE_EXHAUSTED).
- ``Converse`` runs a ``ContextSession``; a client that cancels or disconnects ends it. It
  holds one of the tenant's session slots (``sessions``) while it is open; past the cap it is
  RESOURCE_EXHAUSTED with ``retry-after-ms``.
- A call over the tenant's rate limit is RESOURCE_EXHAUSTED with ``retry-after-ms`` in the
  trailing metadata, as one refused by admission control is.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from pydantic import ValidationError

from indexer.errors import InvalidInput
from query_service import grpc_mapping as mapping
from query_service.context_stream import ContextSession
from query_service.errors import DeadlineExceeded, Overloaded
from query_service.gateway import Gateway
from query_service.grpc_gen import memory_pb2 as pb
from query_service.grpc_gen import memory_pb2_grpc as pb_grpc
from query_service.grpc_malformed import MalformedRequests
from query_service.stream_models import StreamEvent, TurnError

_log = logging.getLogger(__name__)
GRPC = "grpc"
SERVICE = pb.DESCRIPTOR.services_by_name["Memory"].full_name
R = TypeVar("R")
# The servicer's ``context`` is a ``grpc.aio.ServicerContext``; grpc ships no type hints.
Context = Any


class GrpcServer:
    def __init__(
        self,
        *,
        port: int,
        host: str = "127.0.0.1",
        max_message_bytes: int = 4 * 1024 * 1024,
        health_interval_s: float = 0.2,
        grace_s: float = 2.0,
        max_concurrent_rpcs: int | None = 64,
    ) -> None:
        """``max_concurrent_rpcs``: gRPC's own core refuses calls past this many at once
        (RESOURCE_EXHAUSTED, before any Python runs): under overload, calls wait for the
        event loop before admission control can see them, and this bounds that wait. Each
        open ``Converse`` stream holds one. None: unbounded."""
        self._max_concurrent_rpcs = max_concurrent_rpcs
        self._host = host
        self._port = port
        self._max_message_bytes = max_message_bytes
        self._health_interval_s = health_interval_s
        self._grace_s = grace_s
        self._server: Any = None
        self._health: Any = None
        self._watcher: asyncio.Task[None] | None = None
        self._bound = 0

    @property
    def port(self) -> int:
        """The bound port (the ephemeral one for ``port=0``); 0 until started."""
        return self._bound

    @property
    def address(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{host}:{self._bound or self._port}"

    async def start(self, gateway: Gateway) -> None:
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", self._max_message_bytes),
                ("grpc.max_send_message_length", self._max_message_bytes),
                ("grpc.so_reuseport", 0),  # a port in use is an error, not a shared port
            ],
            maximum_concurrent_rpcs=self._max_concurrent_rpcs,
            interceptors=[MalformedRequests(SERVICE)],  # bad bytes: INVALID_ARGUMENT
        )
        pb_grpc.add_MemoryServicer_to_server(MemoryServicer(gateway), server)  # type: ignore[no-untyped-call]  # generated
        checks = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(checks, server)
        reflection.enable_server_reflection(
            (SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        self._bound = int(server.add_insecure_port(self.address))
        for name in ("", SERVICE):
            await checks.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        await server.start()
        self._server, self._health = server, checks
        self._watcher = asyncio.create_task(self._watch(gateway), name="convmem-grpc-health")
        _log.info("gRPC serving on %s", self.address)

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        if self._server is not None:
            await self._server.stop(self._grace_s)
        self._server = self._health = self._watcher = None

    async def _watch(self, gateway: Gateway) -> None:
        """SERVING once the services are built; it stays so while the store is down."""
        serving: bool | None = None
        while True:
            ready = gateway.ready
            if ready != serving:
                status = health_pb2.HealthCheckResponse
                for name in ("", SERVICE):
                    await self._health.set(name, status.SERVING if ready else status.NOT_SERVING)
                serving = ready
            await asyncio.sleep(self._health_interval_s)


class MemoryServicer(pb_grpc.MemoryServicer):
    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    # -- unary ---------------------------------------------------------------------------
    async def Search(self, request: pb.SearchRequest, context: Context) -> pb.SearchResponse:
        arrival = self._gateway.now()

        async def op(tenant: str) -> pb.SearchResponse:
            remaining: float | None = context.time_remaining()
            if remaining is not None and remaining <= 0:
                raise DeadlineExceeded("the call's deadline had passed when it arrived")
            # shed before mapping the request
            self._gateway.check("search", tenant, transport=GRPC, arrival=arrival)
            return await self._gateway.search_as(
                tenant,
                mapping.search_body(request),
                mapping.search_response,  # built on the worker thread, not the loop
                arrival=arrival,
                transport=GRPC,
                deadline_s=remaining,
            )

        return await self._call(context, "Search", op)

    async def Ingest(self, request: pb.IngestRequest, context: Context) -> pb.IngestResponse:
        arrival = self._gateway.now()

        async def op(tenant: str) -> pb.IngestResponse:
            self._gateway.check("ingest", tenant, transport=GRPC, arrival=arrival)
            body = mapping.ingest_body(request)
            r = await self._gateway.ingest(tenant, body, transport=GRPC, arrival=arrival)
            return pb.IngestResponse(accepted=r.accepted, seq=r.seq)

        return await self._call(context, "Ingest", op)

    async def PutConversation(
        self, request: pb.PutConversationRequest, context: Context
    ) -> pb.WriteResponse:
        async def op(tenant: str) -> pb.WriteResponse:
            cid = mapping.required_id(request.conversation_id, "conversation_id")
            body = mapping.conversation_body(request)
            r = await self._gateway.put_conversation(tenant, cid, body, transport=GRPC)
            return pb.WriteResponse(seq=r.seq)

        return await self._call(context, "PutConversation", op)

    async def GetTranscript(
        self, request: pb.GetTranscriptRequest, context: Context
    ) -> pb.Transcript:
        async def op(tenant: str) -> pb.Transcript:
            cid = mapping.required_id(request.conversation_id, "conversation_id")
            conv = await self._gateway.get_conversation(tenant, cid, transport=GRPC)
            return mapping.transcript(conv)

        return await self._call(context, "GetTranscript", op)

    async def DeleteConversation(
        self, request: pb.DeleteConversationRequest, context: Context
    ) -> pb.WriteResponse:
        return await self._delete(context, "conversation", request.conversation_id)

    async def DeleteUtterance(
        self, request: pb.DeleteUtteranceRequest, context: Context
    ) -> pb.WriteResponse:
        return await self._delete(context, "utterance", request.utterance_id)

    async def DeleteUser(self, request: pb.DeleteUserRequest, context: Context) -> pb.WriteResponse:
        return await self._delete(context, "user", request.user_id)

    async def _delete(self, context: Context, what: str, ident: str) -> pb.WriteResponse:
        async def op(tenant: str) -> pb.WriteResponse:
            name = f"{what}_id"
            r = await self._gateway.delete(
                tenant, what, mapping.required_id(ident, name), transport=GRPC
            )
            return pb.WriteResponse(seq=r.seq)

        return await self._call(context, f"Delete{what.title()}", op)

    # -- streams -------------------------------------------------------------------------
    async def IngestStream(self, request_iterator: Any, context: Context) -> pb.IngestResponse:
        """Each batch is validated and stored as it arrives; the answer totals them."""

        async def op(tenant: str) -> pb.IngestResponse:
            accepted, seq, n = 0, 0, 0
            async for request in request_iterator:
                try:
                    body = mapping.ingest_body(request)
                except ValidationError as exc:
                    raise InvalidInput(
                        f"batch {n}: {mapping.describe(exc)} (the {n} batches before it are "
                        f"stored: {accepted} utterances, seq {seq})"
                    ) from exc
                arrival = self._gateway.now()
                try:
                    r = await self._gateway.ingest(tenant, body, transport=GRPC, arrival=arrival)
                except Overloaded as exc:
                    raise Overloaded(
                        f"batch {n}: {exc} (the {n} batches before it are stored: {accepted} "
                        f"utterances, seq {seq})",
                        retry_after_s=exc.retry_after_s,
                        reason=exc.reason,
                    ) from exc
                accepted, seq, n = accepted + r.accepted, max(seq, r.seq), n + 1
            return pb.IngestResponse(accepted=accepted, seq=seq)

        return await self._call(context, "IngestStream", op)

    async def Converse(self, request_iterator: Any, context: Context) -> None:  # noqa: ARG002 - read with context.read()
        """The live context stream: a ``start``, then turns; events as they are ready."""

        async def op(tenant: str) -> None:
            # the slot is held from here to the end, however it ends (a cancel included)
            with self._gateway.open_session(tenant, transport=GRPC, op="context_stream"):
                first = await context.read()
                if first is grpc.aio.EOF:
                    return
                if first.WhichOneof("kind") != "start":
                    raise InvalidInput("the first message of a Converse stream is a start")
                start = mapping.context_start(first.start)
                send = _Sender(context)
                session = ContextSession(
                    gateway=self._gateway, tenant=tenant, start=start, send=send, transport=GRPC
                )
                try:
                    await _converse(self._gateway, context, session, send)
                finally:
                    await session.close()

        await self._call(context, "Converse", op)

    # -- the one way a call runs ---------------------------------------------------------
    async def _call(self, context: Context, name: str, op: Callable[[str], Awaitable[R]]) -> R:
        try:
            tenant = self._gateway.tenant(_authorization(context))
            return await op(tenant)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # noqa: BLE001 - the transport boundary: every error maps
            await _abort(context, name, exc)


async def _converse(
    gateway: Gateway, context: Context, session: ContextSession, send: _Sender
) -> None:
    while True:
        request = await context.read()
        arrival = gateway.now()
        if request is grpc.aio.EOF:
            return
        if request.WhichOneof("kind") != "turn":
            await send(TurnError(code="invalid", message="expected a turn: the stream started"))
            continue
        try:
            turn = mapping.context_turn(request.turn)
        except ValidationError as exc:
            await send(TurnError(code="invalid", message=mapping.describe(exc)))
            continue
        await session.turn(turn, arrival=arrival)


class _Sender:
    """Writes a stream's events one at a time; once the call is over, drops them."""

    def __init__(self, context: Context) -> None:
        self._context = context
        self._lock = asyncio.Lock()
        self._closed = False

    async def __call__(self, event: StreamEvent) -> None:
        async with self._lock:
            if self._closed or self._context.done():
                self._closed = True
                return
            try:
                await self._context.write(mapping.converse_event(event))
            except (grpc.aio.BaseError, asyncio.InvalidStateError):
                self._closed = True  # the client went away; the session is being closed


def _authorization(context: Context) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            return str(value)
    return None


async def _abort(context: Context, name: str, exc: Exception) -> NoReturn:
    status = mapping.status_of(exc)
    if status is None:
        request_id = uuid.uuid4().hex[:16]
        _log.error("internal error, request_id=%s, gRPC %s", request_id, name, exc_info=exc)
        code = grpc.StatusCode.INTERNAL
        status = code, f"internal error; quote request_id {request_id} when reporting it", ()
    code, message, trailing = status
    await context.abort(code, message, trailing_metadata=trailing)
    raise RuntimeError("context.abort returned")  # it raises AbortError
