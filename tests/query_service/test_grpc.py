"""The gRPC API end to end: a real server on a real socket, real PostgreSQL, real embedder.

The app runs under ``TestClient`` (its lifespan starts the ``GrpcServer`` companion on the
client's event loop thread); the tests call it with the generated sync stub, as a client in
another process would.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from convmem.settings import EmbedderSettings, GrpcSettings
from convmem.wiring import build_app, build_services
from indexer.protocols import Embedder
from query_service.admission import AdmissionParams
from query_service.app import create_app
from query_service.auth import Authenticator
from query_service.grpc_gen import memory_pb2 as pb
from query_service.grpc_gen import memory_pb2_grpc as pb_grpc
from query_service.grpc_server import GrpcServer
from query_service.rate_limit import Rate, RateLimits
from query_service.services import Services
from query_service.sessions import SessionLimits
from tests.conftest import app_settings, drop_database
from tests.query_service.conftest import wait_ready
from tests.query_service.helpers import MAYA, T0, TOM

pytestmark = [pytest.mark.integration, pytest.mark.slow]

Code = grpc.StatusCode
ROLES = {"user": pb.ROLE_USER, "agent": pb.ROLE_AGENT}
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass
class Running:
    app: FastAPI
    client: TestClient
    server: GrpcServer
    channel: grpc.Channel
    stub: pb_grpc.MemoryStub

    def health(self, service: str = "") -> Any:
        stub = health_pb2_grpc.HealthStub(self.channel)
        return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status

    def context_streams(self) -> int:
        """Context sessions whose worker still runs, on the server's event loop."""

        def count() -> int:
            tasks = asyncio.all_tasks()
            return sum(1 for t in tasks if t.get_name() == "convmem-context" and not t.done())

        portal = self.client.portal
        assert portal is not None
        return portal.call(count)


@pytest.fixture
def grpc_app(
    database_url: str, tmp_path: Path, real_embedder: Embedder
) -> Callable[..., AbstractContextManager[Running]]:
    """``with grpc_app(keys={...}) as run:`` — the app and its gRPC server, ready to serve."""

    @contextmanager
    def make(
        *,
        keys: dict[str, str] | None = None,
        max_message_bytes: int = 4 * 1024 * 1024,
        services_factory: Callable[[], Services] | None = None,
        auth: Authenticator | None = None,
        admission: AdmissionParams | None = None,
        rates: RateLimits | None = None,
        sessions: SessionLimits | None = None,
        wait: bool = True,
    ) -> Iterator[Running]:
        cfg = app_settings(database_url, tmp_path, keys)
        server = GrpcServer(
            host="127.0.0.1", port=0, max_message_bytes=max_message_bytes, health_interval_s=0.05
        )
        app = create_app(
            services_factory=services_factory
            or (lambda: build_services(cfg, embedder=real_embedder)),
            api_keys=cfg.key_map(),
            auth=auth,
            admission=admission,
            companions=[server],
            rates=rates,
            sessions=sessions,
        )
        with TestClient(app) as client:
            if wait:
                wait_ready(client)
            assert server.port > 0
            with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                run = Running(app, client, server, channel, stub_for(channel))
                if wait:
                    wait_until(lambda: run.health() == SERVING)
                yield run
        assert server.port > 0  # stopped cleanly with the app

    return make


def stub_for(channel: grpc.Channel) -> pb_grpc.MemoryStub:
    return pb_grpc.MemoryStub(channel)  # type: ignore[no-untyped-call]  # generated, untyped


def wait_until(check: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def auth(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


def utterances(
    conv: str, user: str, turns: list[tuple[str, str, str]], day: int = 0
) -> list[pb.Utterance]:
    start = T0 + timedelta(days=day)
    return [
        pb.Utterance(
            id=f"{conv}-{i}",
            conversation_id=conv,
            user_id=user,
            agent_id="concierge",
            speaker=speaker,
            role=ROLES[role],
            text=text,
            started_at=start + timedelta(seconds=20 * i),
        )
        for i, (speaker, role, text) in enumerate(turns)
    ]


def ingest(stub: pb_grpc.MemoryStub, batch: list[pb.Utterance], **kw: Any) -> int:
    r = stub.Ingest(pb.IngestRequest(utterances=batch), timeout=30, **kw)
    assert r.accepted == len(batch)
    assert r.seq > 0
    return int(r.seq)


def search(stub: pb_grpc.MemoryStub, query: str, seq: int, **kw: Any) -> list[pb.Hit]:
    metadata = kw.pop("metadata", ())
    request = pb.SearchRequest(query=query, min_seq=seq, budget_ms=5000, **kw)
    return list(stub.Search(request, timeout=10, metadata=metadata).hits)


def ids(hits: list[pb.Hit]) -> list[str]:
    return [h.turn.utterance_id for h in hits]


def hang(event: threading.Event) -> Iterator[Any]:
    """A request stream that sends nothing until ``event`` (then ends)."""
    event.wait(20)
    yield from ()


def rpc_error(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


# -- unary RPCs ----------------------------------------------------------------------------
def test_ingest_search_transcript_and_forget(grpc_app) -> None:
    with grpc_app() as run:
        stub = run.stub
        ingest(stub, utterances("maya-1", "maya", MAYA))
        seq = ingest(stub, utterances("tom-1", "tom", TOM, day=10))
        hits = search(stub, "what is Maya allergic to", seq, k=3)
        no_deadline = stub.Search(pb.SearchRequest(query="peanuts", min_seq=seq, budget_ms=5000))
        assert ids(list(no_deadline.hits))[:1] == ids(search(stub, "peanuts", seq))[:1]
        assert "maya-1-2" in ids(hits)[:2], ids(hits)
        top = next(h for h in hits if h.turn.utterance_id == "maya-1-2")
        assert top.user_id == "maya" and top.turn.role == pb.ROLE_USER
        assert top.turn.started_at.ToDatetime(tzinfo=UTC) == T0 + timedelta(seconds=40)
        assert top.context and all(c.conversation_id == "maya-1" for c in top.context)
        agents = search(
            stub, "dentist cello Biscuit", seq, k=20, filters=pb.Filters(roles=[pb.ROLE_AGENT])
        )
        assert agents and {h.turn.role for h in agents} == {pb.ROLE_AGENT}
        later = search(
            stub, "dentist Lisbon", seq, k=20, filters=pb.Filters(since=T0 + timedelta(days=5))
        )
        assert later and {h.turn.conversation_id for h in later} == {"tom-1"}

        t = stub.GetTranscript(pb.GetTranscriptRequest(conversation_id="maya-1"), timeout=10)
        assert (t.id, t.user_id, t.agent_id) == ("maya-1", "maya", "concierge")
        assert [x.turn.utterance_id for x in t.turns] == [f"maya-1-{i}" for i in range(6)]
        assert [x.turn.turn for x in t.turns] == list(range(6))
        assert t.turns[1].turn.role == pb.ROLE_AGENT and t.turns[0].source == pb.SOURCE_TEXT
        assert not t.turns[0].HasField("asr_confidence")

        put = stub.PutConversation(
            pb.PutConversationRequest(conversation_id="tom-2", user_id="tom", metadata={"a": "b"}),
            timeout=10,
        )
        assert put.seq >= seq
        t2 = stub.GetTranscript(pb.GetTranscriptRequest(conversation_id="tom-2"), timeout=10)
        assert t2.user_id == "tom" and dict(t2.metadata) == {"a": "b"} and not t2.turns

        seq = stub.DeleteUtterance(pb.DeleteUtteranceRequest(utterance_id="maya-1-2")).seq
        assert "maya-1-2" not in ids(search(stub, "allergic to peanuts", seq, k=20))
        seq = stub.DeleteUser(pb.DeleteUserRequest(user_id="maya"), timeout=10).seq
        maya = pb.Filters(user_id="maya")
        assert search(stub, "Lisbon sunscreen Biscuit peanuts", seq, k=20, filters=maya) == []
        err = rpc_error(
            lambda: stub.GetTranscript(pb.GetTranscriptRequest(conversation_id="maya-1"))
        )
        assert err.code() == Code.NOT_FOUND
        seq = stub.DeleteConversation(pb.DeleteConversationRequest(conversation_id="tom-1")).seq
        assert not any(i.startswith("tom-1") for i in ids(search(stub, "dentist cello", seq)))
        err = rpc_error(
            lambda: stub.DeleteConversation(pb.DeleteConversationRequest(conversation_id="tom-1"))
        )
        assert err.code() == Code.NOT_FOUND


def test_ingest_stream_stores_each_batch_as_it_arrives(grpc_app) -> None:
    with grpc_app() as run:
        stub = run.stub
        batches = [
            pb.IngestRequest(utterances=utterances("maya-1", "maya", MAYA)),
            pb.IngestRequest(utterances=utterances("tom-1", "tom", TOM, day=1)),
        ]
        r = stub.IngestStream(iter(batches), timeout=30)
        assert r.accepted == len(MAYA) + len(TOM)
        found = ids(search(stub, "peanut allergy dentist cello", r.seq, k=20))
        assert any(i.startswith("maya-1") for i in found)
        assert any(i.startswith("tom-1") for i in found)

        bad = pb.Utterance(id="x", conversation_id="late", speaker="A", text="hi", started_at=T0)
        good = pb.IngestRequest(utterances=utterances("maya-2", "maya", MAYA[:2], day=2))
        err = rpc_error(
            lambda: stub.IngestStream(iter([good, pb.IngestRequest(utterances=[bad])]), timeout=30)
        )
        assert err.code() == Code.INVALID_ARGUMENT
        assert "batch 1: utterances.0.role is required" in err.details()
        t = stub.GetTranscript(pb.GetTranscriptRequest(conversation_id="maya-2"), timeout=10)
        assert len(t.turns) == 2  # the batch before the bad one was stored
        assert stub.IngestStream(iter([]), timeout=10).accepted == 0


def _clear(name: str) -> Callable[[pb.Utterance], None]:
    return lambda u: u.ClearField(name)


def _set(**fields: Any) -> Callable[[pb.Utterance], None]:
    return lambda u: u.MergeFrom(pb.Utterance(**fields))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_clear("role"), "utterances.0.role is required"),
        (_set(role=99), "utterances.0.role: Input should be"),  # no such Role
        (_clear("started_at"), "utterances.0.started_at is required"),
        (_set(source=7), "utterances.0.source: Input should be"),
        (_set(text=" "), "utterances.0: text must not be blank"),
        (_set(asr_confidence=1.5), "utterances.0.asr_confidence"),
        (_set(ended_at=T0 - timedelta(days=1)), "ended_at is before started_at"),
        (_clear("conversation_id"), "utterances.0.conversation_id: String should have"),
    ],
)
def test_invalid_utterance_names_the_field(grpc_app, change, message) -> None:
    with grpc_app() as run:
        utterance = utterances("c", "u", MAYA[:1])[0]
        change(utterance)
        request = pb.IngestRequest(utterances=[utterance])
        err = rpc_error(lambda: run.stub.Ingest(request, timeout=10))
        assert err.code() == Code.INVALID_ARGUMENT, err
        assert message in err.details()
        empty = rpc_error(lambda: run.stub.Ingest(pb.IngestRequest(), timeout=10))
        assert empty.code() == Code.INVALID_ARGUMENT and "utterances" in empty.details()
        assert ingest(run.stub, utterances("ok", "u", MAYA[:1])) > 0  # still serving


UNKNOWN: Any = 9  # an enum number the proto does not define
UNSPECIFIED: Any = 0
INVALID_REQUESTS = [
    (pb.SearchRequest(query="q", k=101), "k: Input should be less than or equal to 100"),
    (pb.SearchRequest(query="q", k=-1), "k: Input should be greater than or equal to 1"),
    (pb.SearchRequest(query=" "), "query: String should have at least 1 character"),
    (pb.SearchRequest(query="q", mode=UNKNOWN), "mode: Input should be"),  # no such Mode
    (pb.SearchRequest(query="q", budget_ms=-5), "budget_ms: Input should be greater than or equal"),
    (pb.SearchRequest(query="q", min_seq=-1), "min_seq: Input should be greater than"),
    (
        pb.SearchRequest(query="q", filters=pb.Filters(roles=[UNSPECIFIED])),
        "filters.roles.0: Input",
    ),
    (
        pb.SearchRequest(query="q", filters=pb.Filters(conversation_ids=["a", ""])),
        "filters.conversation_ids.1: String should have at least 1 character",
    ),
    (
        pb.SearchRequest(query="q", filters=pb.Filters(since=T0, until=T0 - timedelta(1))),
        "filters: since is later than until",
    ),
    (pb.GetTranscriptRequest(conversation_id=" "), "conversation_id is required"),
    (pb.PutConversationRequest(), "conversation_id is required"),
    (pb.DeleteUtteranceRequest(), "utterance_id is required"),
    (pb.DeleteUserRequest(), "user_id is required"),
]


def test_invalid_requests_name_the_field(grpc_app) -> None:
    with grpc_app() as run:
        stub = run.stub
        rpcs: dict[type, Any] = {
            pb.SearchRequest: stub.Search,
            pb.GetTranscriptRequest: stub.GetTranscript,
            pb.PutConversationRequest: stub.PutConversation,
            pb.DeleteUtteranceRequest: stub.DeleteUtterance,
            pb.DeleteUserRequest: stub.DeleteUser,
        }
        for request, message in INVALID_REQUESTS:
            rpc = rpcs[type(request)]
            err = rpc_error(partial(rpc, request, timeout=10))
            assert err.code() == Code.INVALID_ARGUMENT, (request, err)
            assert message in err.details(), (message, err.details())
        assert search(stub, "anything", 0) == []  # still serving


def test_oversized_message_is_refused_by_grpc(grpc_app) -> None:
    with grpc_app(max_message_bytes=64 * 1024) as run:
        big = [
            pb.Utterance(
                id=f"big-{i}",
                conversation_id="big",
                speaker="A",
                role=pb.ROLE_USER,
                text="word " * 1000,
                started_at=T0,
            )
            for i in range(20)
        ]
        err = rpc_error(lambda: run.stub.Ingest(pb.IngestRequest(utterances=big), timeout=10))
        assert err.code() == Code.RESOURCE_EXHAUSTED
        assert ingest(run.stub, big[:2]) > 0


# -- auth and tenants ----------------------------------------------------------------------
def test_keys_and_tenant_isolation(grpc_app) -> None:
    with grpc_app(keys={"alpha-key-1": "alpha", "beta-key-22": "beta"}) as run:
        stub = run.stub
        request = pb.SearchRequest(query="peanuts")
        for metadata in [(), auth("nope"), (("authorization", "Basic alpha-key-1"),)]:
            err = rpc_error(partial(stub.Search, request, metadata=metadata, timeout=10))
            assert err.code() == Code.UNAUTHENTICATED, metadata
        seq = ingest(stub, utterances("maya-1", "maya", MAYA), metadata=auth("alpha-key-1"))
        assert "maya-1-2" in ids(search(stub, "peanuts", seq, metadata=auth("alpha-key-1")))
        assert (
            search(stub, "peanuts allergic Lisbon", seq, k=20, metadata=auth("beta-key-22")) == []
        )
        get = pb.GetTranscriptRequest(conversation_id="maya-1")
        err = rpc_error(lambda: stub.GetTranscript(get, metadata=auth("beta-key-22"), timeout=10))
        assert err.code() == Code.NOT_FOUND
        drop = pb.DeleteConversationRequest(conversation_id="maya-1")
        err = rpc_error(
            lambda: stub.DeleteConversation(drop, metadata=auth("beta-key-22"), timeout=10)
        )
        assert err.code() == Code.NOT_FOUND
        assert len(stub.GetTranscript(get, metadata=auth("alpha-key-1"), timeout=10).turns) == 6

        # a stream with a wrong key is refused before the server reads a message: this
        # request iterator never yields, so a server that waited for it would time out
        never = threading.Event()
        call = stub.Converse(hang(never), metadata=auth("nope"), timeout=15)
        err = rpc_error(lambda: next(call))
        never.set()
        assert err.code() == Code.UNAUTHENTICATED


class _Boom:
    def tenant_for(self, authorization: str | None) -> str:
        raise RuntimeError(f"secret internals {authorization}")


def test_unexpected_error_is_internal_with_a_request_id(grpc_app, caplog) -> None:
    with grpc_app(auth=_Boom()) as run:
        with caplog.at_level(logging.ERROR, logger="query_service.grpc_server"):
            err = rpc_error(lambda: run.stub.Search(pb.SearchRequest(query="q"), timeout=10))
        assert err.code() == Code.INTERNAL
        assert "request_id" in err.details() and "secret" not in err.details()
        request_id = err.details().split("request_id ")[1].split()[0]
        assert any(request_id in r.getMessage() for r in caplog.records)


def test_shed_call_is_resource_exhausted_with_retry_after(grpc_app) -> None:
    with grpc_app(admission=AdmissionParams(ingest_limit=1)) as run:
        permit = run.app.state.gateway.admission.try_acquire("ingest", "default")
        batch = utterances("maya-1", "maya", MAYA)
        try:
            with pytest.raises(grpc.RpcError) as info:
                run.stub.Ingest(pb.IngestRequest(utterances=batch), timeout=10)
        finally:
            permit.release()
        err: Any = info.value
        assert err.code() == Code.RESOURCE_EXHAUSTED
        trailing = dict(err.trailing_metadata())
        assert int(trailing["retry-after-ms"]) > 0
        assert ingest(run.stub, batch) > 0


def test_a_call_over_the_tenant_rate_is_resource_exhausted_with_a_retry_hint(grpc_app) -> None:
    keys = {"key-acme-1111": "acme", "key-beta-2222": "beta"}
    rates = RateLimits(search=Rate(per_s=0.5, burst=2), ingest=Rate(per_s=0.5, burst=10))
    with grpc_app(keys=keys, rates=rates) as run:
        stub, acme, beta = run.stub, auth("key-acme-1111"), auth("key-beta-2222")
        query = pb.SearchRequest(query="peanuts")
        for _ in range(2):
            stub.Search(query, timeout=10, metadata=acme)
        err: Any = rpc_error(lambda: stub.Search(query, timeout=10, metadata=acme))
        assert err.code() == Code.RESOURCE_EXHAUSTED and "rate limit" in err.details()
        assert 1000 < int(dict(err.trailing_metadata())["retry-after-ms"]) <= 2000
        for _ in range(2):
            stub.Search(query, timeout=10, metadata=beta)  # another tenant's own bucket
        # ingest is counted by utterances: 6 of 10, then a stream of 4 and 6
        ingest(stub, utterances("maya-1", "maya", MAYA), metadata=acme)
        batches = [
            pb.IngestRequest(utterances=utterances("tom-1", "tom", TOM)),
            pb.IngestRequest(utterances=utterances("maya-2", "maya", MAYA)),
        ]
        err = rpc_error(lambda: stub.IngestStream(iter(batches), timeout=30, metadata=acme))
        assert err.code() == Code.RESOURCE_EXHAUSTED
        assert "batch 1:" in err.details() and "stored: 4 utterances" in err.details()
        assert int(dict(err.trailing_metadata())["retry-after-ms"]) > 0
        get = pb.GetTranscriptRequest
        assert (
            len(stub.GetTranscript(get(conversation_id="tom-1"), timeout=10, metadata=acme).turns)
            == 4
        )
        err = rpc_error(
            lambda: stub.GetTranscript(get(conversation_id="maya-2"), timeout=10, metadata=acme)
        )
        assert err.code() == Code.NOT_FOUND
        metrics = run.client.get("/metrics").text
        assert 'convmem_shed_total{op="search",reason="rate_limit",transport="grpc"} 1.0' in metrics
        assert 'convmem_shed_total{op="ingest",reason="rate_limit",transport="grpc"} 1.0' in metrics


def test_converse_sessions_are_capped_per_tenant_across_transports_and_freed(grpc_app) -> None:
    with grpc_app(sessions=SessionLimits(per_tenant=1)) as run:
        stub, sessions = run.stub, run.app.state.gateway.sessions
        first = Stream(stub)
        first.start(conversation_id="live-1", user_id="maya")
        first.turn("where am I travelling to?", store=False)
        first.until(context_of(0))
        assert sessions.held("default") == 1
        second = Stream(stub)
        second.start(conversation_id="live-2")
        second.end()
        err: Any = rpc_error(lambda: list(second.call))
        assert err.code() == Code.RESOURCE_EXHAUSTED and "open sessions" in err.details()
        assert dict(err.trailing_metadata())["retry-after-ms"] == "1000"
        # the same cap holds the context WebSocket of the same tenant
        with run.client.websocket_connect("/v1/context/stream") as ws:
            assert ws.receive_json()["code"] == "too_many_sessions"
        first.call.cancel()  # a cancelled call frees its slot
        first.end()
        wait_until(lambda: sessions.held("default") == 0)
        again = Stream(stub)
        again.start(conversation_id="live-3", user_id="maya")
        again.turn("and my peanut allergy?", store=False)
        again.until(context_of(0))
        again.rest()  # a normal end frees it
        wait_until(lambda: sessions.held("default") == 0)
        turn_first = pb.ConverseRequest(
            turn=pb.ConverseTurn(speaker="A", role=pb.ROLE_USER, text="hi")
        )
        err = rpc_error(lambda: list(stub.Converse(iter([turn_first]), timeout=10)))
        assert err.code() == Code.INVALID_ARGUMENT  # an error ending frees it too
        wait_until(lambda: sessions.held("default") == 0)
        metrics = run.client.get("/metrics").text
        for transport in ("grpc", "ws"):
            labels = f'op="context_stream",reason="sessions",transport="{transport}"'
            assert f"convmem_shed_total{{{labels}}} 1.0" in metrics


# -- health, reflection, readiness ---------------------------------------------------------
def test_health_serving_only_once_ready_and_reflection(
    grpc_app, database_url, tmp_path, real_embedder
) -> None:
    release = threading.Event()
    cfg = app_settings(database_url, tmp_path)

    def slow_services() -> Services:
        release.wait(30)
        return build_services(cfg, embedder=real_embedder)

    with grpc_app(services_factory=slow_services, wait=False) as run:
        try:
            check_health_and_reflection(run, release)
        finally:
            release.set()


def check_health_and_reflection(run: Running, release: threading.Event) -> None:
    assert run.health() == NOT_SERVING
    assert run.health("convmem.v1.Memory") == NOT_SERVING
    err = rpc_error(lambda: run.stub.Search(pb.SearchRequest(query="q"), timeout=10))
    assert err.code() == Code.UNAVAILABLE and "starting" in err.details()
    release.set()
    wait_until(lambda: run.health() == SERVING)
    assert run.health("convmem.v1.Memory") == SERVING

    database = ProtoReflectionDescriptorDatabase(run.channel)
    services = set(database.get_services())
    assert {"convmem.v1.Memory", "grpc.health.v1.Health"} <= services
    file = database.FindFileContainingSymbol("convmem.v1.Memory")
    assert file.package == "convmem.v1"
    methods = {m.name for s in file.service if s.name == "Memory" for m in s.method}
    assert methods >= {"Search", "IngestStream", "Converse", "DeleteUser"}


# -- deadlines and cancellation ------------------------------------------------------------
def test_deadlines_and_cancellation_leave_the_server_serving(grpc_app) -> None:
    with grpc_app() as run:
        stub = run.stub
        seq = ingest(stub, utterances("maya-1", "maya", MAYA))
        for _ in range(3):
            err = rpc_error(lambda: stub.Search(pb.SearchRequest(query="peanuts"), timeout=0.0001))
            assert err.code() == Code.DEADLINE_EXCEEDED
        # a budget no search could meet is the caller's mistake
        tiny = pb.SearchRequest(query="peanuts", budget_ms=0.001)
        err = rpc_error(lambda: stub.Search(tiny, timeout=10))
        assert err.code() == Code.INVALID_ARGUMENT and "budget_ms" in err.details()

        futures = [
            stub.Search.future(
                pb.SearchRequest(query="peanuts", min_seq=seq + 10**6, budget_ms=10_000),
                timeout=30,
            )
            for _ in range(3)
        ]
        admission = run.app.state.gateway.admission
        wait_until(lambda: admission.inflight("search") == 3, timeout_s=10)
        for f in futures:
            f.cancel()
        for f in futures:
            assert f.cancelled() or f.code() in (Code.CANCELLED, Code.OK)
        # each was waiting up to 5 s for an index that will not get there: a hang-up abandons
        # the wait, so the slots come back now, not when the budget is spent
        wait_until(lambda: admission.inflight("search") == 0, timeout_s=2)
        never = threading.Event()
        stream = stub.IngestStream.future(hang(never), timeout=30)
        time.sleep(0.05)
        stream.cancel()
        never.set()
        assert stream.cancelled() or stream.code() == Code.CANCELLED

        assert "maya-1-2" in ids(search(stub, "peanuts", seq))
        assert run.health() == SERVING
        assert run.client.get("/readyz").status_code == 200


# -- Converse ------------------------------------------------------------------------------
class Stream:
    """A Converse call fed from a queue; ``until`` reads events up to one that matches."""

    def __init__(self, stub: pb_grpc.MemoryStub, metadata: Any = (), timeout: float = 60) -> None:
        self._requests: queue.Queue[pb.ConverseRequest | None] = queue.Queue()
        self.call = stub.Converse(
            iter(self._requests.get, None), metadata=metadata, timeout=timeout
        )
        self.events: list[pb.ConverseEvent] = []

    def start(self, **fields: Any) -> None:
        self._requests.put(pb.ConverseRequest(start=pb.ConverseStart(**fields)))

    def turn(
        self,
        text: str,
        *,
        speaker: str = "Maya",
        role: pb.Role = pb.ROLE_USER,
        store: bool = True,
        **fields: Any,
    ) -> None:
        turn = pb.ConverseTurn(speaker=speaker, role=role, text=text, store=store, **fields)
        self._requests.put(pb.ConverseRequest(turn=turn))

    def end(self) -> None:
        self._requests.put(None)

    def until(self, match: Callable[[pb.ConverseEvent], bool]) -> pb.ConverseEvent:
        event: pb.ConverseEvent
        for event in self.call:
            self.events.append(event)
            if match(event):
                return event
        raise AssertionError(f"the stream ended first: {self.events}")

    def rest(self) -> list[pb.ConverseEvent]:
        self.end()
        self.events.extend(self.call)
        return self.events


def context_of(turn: int) -> Callable[[pb.ConverseEvent], bool]:
    return lambda e: e.WhichOneof("kind") == "context" and e.context.turn == turn


def answered(turn: int) -> Callable[[pb.ConverseEvent], bool]:
    return lambda e: (
        e.WhichOneof("kind") in ("context", "error")
        and getattr(e, e.WhichOneof("kind")).turn == turn
    )


def test_converse_end_to_end(grpc_app) -> None:
    with grpc_app() as run:
        stub = run.stub
        ingest(stub, utterances("maya-1", "maya", MAYA))
        seq = ingest(stub, utterances("tom-1", "tom", TOM))
        assert search(stub, "peanuts", seq)  # indexed before the stream asks

        stream = Stream(stub)
        stream.start(
            conversation_id="maya-live", user_id="maya", k=3, exclude_recent=2, budget_ms=5000
        )
        texts = [
            "I am about to check in at the hotel in Lisbon.",
            "Welcome back. Is there anything the hotel should know about you?",
            "Yes, please remind them about my peanut allergy.",
            "And who is looking after my dog Biscuit while I travel?",
            "Thanks, and did I pack the travel adapter and sunscreen?",
        ]
        sent: list[str] = []
        seen: list[str] = []
        for n, text in enumerate(texts):
            agent = n == 1
            if n == 1:
                assert run.context_streams() == 1  # the session, ended below
            stream.turn(
                text,
                speaker="Agent" if agent else "Maya",
                role=pb.ROLE_AGENT if agent else pb.ROLE_USER,
            )
            stored = stream.until(lambda e: e.WhichOneof("kind") == "stored").stored
            assert (stored.turn, stored.utterance_id) == (n, f"maya-live:stream:{n}")
            assert stored.seq > seq
            sent.append(stored.utterance_id)
            context = stream.until(context_of(n)).context
            recent = set(sent[-2:])
            for hit in context.hits:
                assert hit.turn.utterance_id not in recent, (n, hit.turn.utterance_id)
                assert hit.user_id == "maya"
                seen.append(hit.turn.utterance_id)
            assert len(context.hits) <= 3 and context.superseded == 0
        assert len(seen) == len(set(seen)), seen  # never a memory twice on the stream
        earlier = {i for i in seen if i.startswith("maya-1-")}
        assert earlier & {"maya-1-2", "maya-1-3"}, seen  # the allergy, from last time
        assert earlier & {"maya-1-4", "maya-1-5"}, seen  # Biscuit
        assert not any(i.startswith("tom-1") for i in seen)
        events = stream.rest()
        assert not [e for e in events if e.WhichOneof("kind") == "error"]
        t = stub.GetTranscript(pb.GetTranscriptRequest(conversation_id="maya-live"), timeout=10)
        assert [x.turn.utterance_id for x in t.turns] == sent and t.user_id == "maya"
        wait_until(lambda: run.context_streams() == 0)


def test_converse_flood_is_superseded_and_bounded(grpc_app) -> None:
    with grpc_app() as run:
        stub = run.stub
        seq = ingest(stub, utterances("maya-1", "maya", MAYA))
        assert search(stub, "peanuts", seq)
        stream = Stream(stub, timeout=120)
        stream.start(conversation_id="flood", user_id="maya", k=2, budget_ms=5000)
        words = ["Lisbon", "peanuts", "Biscuit", "sunscreen", "hotel", "adapter", "sister"]
        total = 200
        for n in range(total):
            stream.turn(f"turn {n}: tell me about {words[n % len(words)]} again", store=False)
        stream.until(answered(total - 1))  # the latest turn always gets its answer
        events = stream.rest()
        contexts = [e.context for e in events if e.WhichOneof("kind") == "context"]
        errors = [e.error for e in events if e.WhichOneof("kind") == "error"]
        assert errors == []
        assert not any(e.WhichOneof("kind") == "stored" for e in events)
        assert 1 <= len(contexts) < total
        superseded = sum(c.superseded for c in contexts)
        assert superseded > 0
        assert len(contexts) + superseded == total  # each turn answered or passed over
        turns = [c.turn for c in contexts]
        assert turns == sorted(set(turns)) and turns[-1] == total - 1
        hits = [h.turn.utterance_id for c in contexts for h in c.hits]
        assert len(hits) == len(set(hits)) <= len(MAYA)
        assert "maya-1-2" in ids(search(stub, "peanuts", seq))
        wait_until(lambda: run.context_streams() == 0)


def test_converse_protocol_errors(grpc_app) -> None:
    with grpc_app() as run:
        stub = run.stub
        turn_first = pb.ConverseRequest(
            turn=pb.ConverseTurn(speaker="A", role=pb.ROLE_USER, text="hi")
        )
        err = rpc_error(lambda: list(stub.Converse(iter([turn_first]), timeout=10)))
        assert err.code() == Code.INVALID_ARGUMENT and "start" in err.details()
        bad_start = pb.ConverseRequest(start=pb.ConverseStart(conversation_id="c", k=51))
        err = rpc_error(lambda: list(stub.Converse(iter([bad_start]), timeout=10)))
        assert err.code() == Code.INVALID_ARGUMENT and "k:" in err.details()
        empty = pb.ConverseRequest(start=pb.ConverseStart())
        err = rpc_error(lambda: list(stub.Converse(iter([empty]), timeout=10)))
        assert err.code() == Code.INVALID_ARGUMENT and "conversation_id" in err.details()
        assert list(stub.Converse(iter([]), timeout=10)) == []

        stream = Stream(stub)
        stream.start(conversation_id="c-1", user_id="maya")
        stream.turn("no role given", role=pb.ROLE_UNSPECIFIED)
        error = stream.until(lambda e: e.WhichOneof("kind") == "error").error
        assert (error.turn, error.code) == (-1, "invalid") and "role is required" in error.message
        stream.start(conversation_id="c-2")
        error = stream.until(lambda e: e.WhichOneof("kind") == "error").error
        assert error.code == "invalid" and "turn" in error.message
        stream.turn("now a proper turn about my trip", store=True)
        assert stream.until(lambda e: e.WhichOneof("kind") == "stored").stored.turn == 0
        stream.until(context_of(0))
        stream.rest()


def test_converse_client_going_away_ends_the_session(grpc_app, caplog) -> None:
    with grpc_app() as run, caplog.at_level(logging.WARNING):
        stub = run.stub
        seq = ingest(stub, utterances("maya-1", "maya", MAYA))
        # a client that cancels its call mid-stream
        stream = Stream(stub)
        stream.start(conversation_id="gone-1", user_id="maya", budget_ms=5000)
        stream.turn("Tell the hotel about my peanut allergy.")
        stream.until(lambda e: e.WhichOneof("kind") == "stored")
        for n in range(20):
            stream.turn(f"and Biscuit the dog, number {n}?", store=False)
        stream.call.cancel()
        stream.end()
        # a client whose connection goes away mid-stream
        channel = grpc.insecure_channel(f"127.0.0.1:{run.server.port}")
        other = Stream(stub_for(channel))
        other.start(conversation_id="gone-2", user_id="maya", budget_ms=5000)
        other.turn("Where am I travelling to?")
        other.until(lambda e: e.WhichOneof("kind") == "stored")
        for n in range(20):
            other.turn(f"and the sunscreen, number {n}?", store=False)
        channel.close()
        other.end()

        wait_until(lambda: run.context_streams() == 0)
        assert "maya-1-2" in ids(search(stub, "peanuts", seq))
        again = Stream(stub)
        again.start(conversation_id="after", user_id="maya")
        again.turn("one more thing about my peanut allergy", store=False)
        again.until(context_of(0))
        again.rest()
        assert run.health() == SERVING
    ours = [r for r in caplog.records if r.name.startswith("query_service")]
    assert ours == [], [r.getMessage() for r in ours]


# -- wiring --------------------------------------------------------------------------------
def test_serve_wiring_starts_grpc_beside_rest(database_url, tmp_path, model_cache) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    settings = app_settings(
        database_url,
        tmp_path,
        {"wiring-key-1": "acme"},
        grpc=GrpcSettings(port=port),
        embedder=EmbedderSettings(cache_dir=model_cache),
    )
    with TestClient(build_app(settings)) as client:
        wait_ready(client)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            check = health_pb2.HealthCheckRequest(service="convmem.v1.Memory")
            wait_until(lambda: health.Check(check, timeout=10).status == SERVING)
            stub = stub_for(channel)
            seq = ingest(stub, utterances("maya-1", "maya", MAYA), metadata=auth("wiring-key-1"))
            r = client.post(
                "/v1/search",
                json={"query": "peanuts", "min_seq": seq, "budget_ms": 5000},
                headers={"Authorization": "Bearer wiring-key-1"},
            )
            assert r.status_code == 200 and r.json()["hits"]  # one store, one gateway
            metrics = client.get("/metrics").text
            assert 'transport="grpc"' in metrics and 'transport="rest"' in metrics


def test_grpc_is_not_imported_unless_served() -> None:
    probe = (
        "import sys; from pathlib import Path; from convmem.settings import Settings; "
        "from convmem.wiring import build_app; import convmem.cli; "
        "build_app(Settings(grpc={'port': 0}, data_dir=Path('unused'))); "
        "print(sorted(m for m in sys.modules if m.split('.')[0].startswith('grpc')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# -- the store down --------------------------------------------------------------------------
def test_with_the_store_gone_health_stays_serving_and_only_writes_are_unavailable(
    grpc_app, database_url: str
) -> None:
    with grpc_app() as run:
        seq = ingest(run.stub, utterances("maya-1", "maya", MAYA))
        drop_database(database_url)
        # the feed fails from now on; a load balancer must still send searches here
        wait_until(lambda: run.app.state.services.tailer.last_error is not None, timeout_s=30)
        time.sleep(0.5)  # ten rounds of the health watcher (every 50 ms here)
        assert run.health() == SERVING and run.health("convmem.v1.Memory") == SERVING
        assert "maya-1-2" in ids(search(run.stub, "peanuts", seq))
        err = rpc_error(
            lambda: run.stub.Ingest(
                pb.IngestRequest(utterances=utterances("maya-2", "maya", MAYA)), timeout=30
            )
        )
        assert err.code() == Code.UNAVAILABLE
