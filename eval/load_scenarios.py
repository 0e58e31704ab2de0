"""The load benchmark's scenarios (``eval.load_bench``), against one running server."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from eval.loadgen import HttpPool, Record, open_loop, poisson_arrivals
from eval.synthetic import SyntheticUtterance

BUDGET_S = 0.050
TIMEOUT_S = 2.0
INGEST_BATCH = 1000


@dataclass(frozen=True)
class Target:
    host: str
    http_port: int
    grpc_port: int
    keys: dict[str, str]  # key -> tenant

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    def key_of(self, tenant: str) -> str:
        return next(k for k, t in self.keys.items() if t == tenant)


class Searches:
    """Scoped hybrid searches over REST or gRPC; ``send(i)`` → (status, degraded)."""

    def __init__(self, target: Target, tenant: str, queries: Sequence[str], users: int) -> None:
        self.target, self.queries, self.users = target, queries, users
        auth = f"Bearer {target.key_of(tenant)}"
        self.pool = HttpPool(
            target.host, target.http_port, size=256, headers={"authorization": auth}
        )
        self._metadata = (("authorization", auth),)
        self._stub: Any = None
        self._channel: Any = None

    def body(self, i: int) -> dict[str, Any]:
        return {
            "query": self.queries[i % len(self.queries)],
            "k": 10,
            "filters": {"user_id": f"user-{i % self.users}"},
        }

    async def rest(self, i: int) -> tuple[int, bool]:
        status, data = await self.pool.post("/v1/search", self.body(i))
        return status, bool(data.get("degraded")) if status == 200 else False

    async def grpc(self, i: int, timeout_s: float | None = None) -> tuple[int, bool]:
        import grpc

        from query_service.grpc_gen import memory_pb2 as pb
        from query_service.grpc_gen import memory_pb2_grpc as pb_grpc

        if self._stub is None:
            self._channel = grpc.aio.insecure_channel(f"{self.target.host}:{self.target.grpc_port}")
            self._stub = pb_grpc.MemoryStub(self._channel)  # type: ignore[no-untyped-call]  # generated
        b = self.body(i)
        req = pb.SearchRequest(
            query=b["query"],
            k=10,
            budget_ms=50,
            filters=pb.Filters(user_id=b["filters"]["user_id"]),
        )
        try:
            resp = await self._stub.Search(
                req, timeout=timeout_s or TIMEOUT_S, metadata=self._metadata
            )
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                return 429, False
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                return 504, False
            return 500, False
        return 200, bool(resp.degraded)

    async def aclose(self) -> None:
        await self.pool.aclose()
        if self._channel is not None:
            await self._channel.close()


async def metrics_text(pool: HttpPool) -> str:
    reader, writer = await asyncio.open_connection(pool._host, pool._port)  # noqa: SLF001
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    raw = await reader.read()
    writer.close()
    await writer.wait_closed()
    return raw.split(b"\r\n\r\n", 1)[1].decode()


_BUCKET = re.compile(
    r'convmem_request_seconds_bucket\{le="([^"]+)",op="search",transport="(\w+)"\} (\S+)'
)


def _buckets(text: str, transport: str) -> list[tuple[float, float]]:
    return [
        (float("inf") if le == "+Inf" else float(le), float(v))
        for le, t, v in _BUCKET.findall(text)
        if t == transport
    ]


def server_quantile(before: str, after: str, transport: str, q: float) -> float | None:
    """The q-quantile (ms) of server-side search latency between two scrapes, interpolated
    within the histogram's bucket (an estimate: the buckets are 20-25 ms wide near 50 ms)."""
    b0, b1 = dict(_buckets(before, transport)), _buckets(after, transport)
    counts = [(le, v - b0.get(le, 0.0)) for le, v in b1]
    total = counts[-1][1] if counts else 0
    if not total:
        return None
    rank, lo, prev = q * total, 0.0, 0.0
    for le, c in counts:
        if c >= rank:
            if le == float("inf"):
                return round(lo * 1000, 1)
            frac = (rank - prev) / max(c - prev, 1e-9)
            return round((lo + frac * (le - lo)) * 1000, 1)
        lo, prev = le, c
    return None


async def load_corpus(target: Target, utts: Sequence[SyntheticUtterance]) -> None:
    pool = HttpPool(
        target.host,
        target.http_port,
        size=2,
        headers={"authorization": f"Bearer {target.key_of('acme')}"},
    )
    small = HttpPool(
        target.host,
        target.http_port,
        size=1,
        headers={"authorization": f"Bearer {target.key_of('beta')}"},
    )
    bar = tqdm(total=len(utts), desc="load corpus", unit="utt", file=sys.stderr)
    for i in range(0, len(utts), INGEST_BATCH):
        chunk = [u.api_body() for u in utts[i : i + INGEST_BATCH]]
        for attempt in range(100):
            status, data = await pool.post("/v1/utterances", {"utterances": chunk})
            if status == 200:
                break
            await asyncio.sleep(0.2 * (attempt + 1))
        else:
            raise RuntimeError(f"ingest failed: {status} {data}")
        if i < 5 * INGEST_BATCH:  # the second tenant gets the first 5k
            await small.post("/v1/utterances", {"utterances": chunk})
        bar.update(len(chunk))
    bar.close()
    await pool.aclose()
    await small.aclose()


async def capacity(s: Searches, clients: int, duration_s: float) -> float:
    loop = asyncio.get_running_loop()
    end = loop.time() + duration_s
    done = [0]

    async def worker(w: int) -> None:
        i = w
        while loop.time() < end:
            status, _ = await s.rest(i)
            if status == 200:
                done[0] += 1
            else:
                await asyncio.sleep(0.001)
            i += clients

    await asyncio.gather(*(worker(w) for w in range(clients)))
    return round(done[0] / duration_s, 1)


async def step(
    s: Searches,
    send: Callable[[int], Awaitable[tuple[int, bool]]],
    rate: float,
    duration_s: float,
    rng: np.random.Generator,
    transport: str,
) -> dict[str, Any]:
    before = await metrics_text(s.pool)
    record = await open_loop(poisson_arrivals(rate, duration_s, rng), send, TIMEOUT_S)
    after = await metrics_text(s.pool)
    row = record.summary(duration_s, BUDGET_S)
    row["server_p99_ms"] = server_quantile(before, after, transport, 0.99)
    return row


async def stream_latency(target: Target, duration_s: float) -> dict[str, Any]:
    import websockets

    url = f"ws://{target.host}:{target.http_port}/v1/context/stream"
    headers = {"authorization": f"Bearer {target.key_of('acme')}"}
    lat: list[float] = []
    errors = 0
    loop = asyncio.get_running_loop()
    async with websockets.connect(url, additional_headers=headers) as ws:
        await ws.send(
            json.dumps({"type": "start", "conversation_id": "load-stream", "user_id": "user-1"})
        )
        json.loads(await ws.recv())
        end = loop.time() + duration_s
        n = 0
        while loop.time() < end:
            sent = loop.time()
            await ws.send(
                json.dumps(
                    {
                        "type": "turn",
                        "speaker": "user-1",
                        "role": "user",
                        "text": f"what did we say about turn {n}",
                        "store": True,
                    }
                )
            )
            while True:
                event = json.loads(await ws.recv())
                if event["type"] in ("context", "error") and event.get("turn") == n:
                    break
            if event["type"] == "context":
                lat.append((loop.time() - sent) * 1000)
            else:
                errors += 1
            n += 1
            await asyncio.sleep(max(0.0, 0.1 - (loop.time() - sent)))
        await ws.send(json.dumps({"type": "end"}))
    a = np.asarray(lat or [float("nan")])
    return {
        "p50": round(float(np.percentile(a, 50)), 2),
        "p99": round(float(np.percentile(a, 99)), 2),
        "n": len(lat),
        "errors": errors,
    }


async def mixed(
    s: Searches, target: Target, rate: float, duration_s: float, rng: np.random.Generator
) -> dict[str, Any]:
    ingest = HttpPool(
        target.host,
        target.http_port,
        size=8,
        headers={"authorization": f"Bearer {target.key_of('acme')}"},
    )
    acked, shed, sent = [0], [0], [0]
    statuses: dict[str, int] = {}

    async def writes() -> None:
        loop = asyncio.get_running_loop()
        end, n = loop.time() + duration_s, 0
        tasks = []
        while loop.time() < end:
            batch = [
                {
                    "id": f"mix-{rate}-{n}-{j}",
                    "conversation_id": f"mix-{rate}-{n // 4}",  # 40 turns each
                    "user_id": f"user-{(n // 4) % 100}",
                    "speaker": "u",
                    "role": "user",
                    "text": f"mixed workload utterance {n} {j}",
                    "started_at": "2026-06-01T00:00:00+00:00",
                }
                for j in range(10)
            ]
            n += 1

            async def post(b: list[dict[str, Any]] = batch) -> None:
                sent[0] += len(b)
                status, _ = await ingest.post("/v1/utterances", {"utterances": b})
                statuses[str(status)] = statuses.get(str(status), 0) + 1
                if status == 200:
                    acked[0] += len(b)
                elif status == 429:
                    shed[0] += len(b)

            tasks.append(asyncio.create_task(post()))
            await asyncio.sleep(0.1)
        await asyncio.gather(*tasks)

    search_task = asyncio.create_task(
        open_loop(poisson_arrivals(rate, duration_s, rng), s.rest, TIMEOUT_S)
    )
    await writes()
    record: Record = await search_task
    await ingest.aclose()
    return {
        "search": record.summary(duration_s, BUDGET_S),
        "ingest_acked_per_s": round(acked[0] / duration_s, 1),
        "ingest_shed_share": round(shed[0] / max(1, sent[0]), 4),
        "ingest_statuses": statuses,
    }


async def run_size(
    target: Target,
    utts: Sequence[SyntheticUtterance],
    loaded: int,
    size: int,
    queries: Sequence[str],
    rng: np.random.Generator,
    *,
    users: int,
    duration_s: float,
    multiples: Sequence[float],
) -> dict[str, Any]:
    await load_corpus(target, utts[loaded:size])
    s = Searches(target, "acme", queries, users)
    await capacity(s, 2, 2.0)  # warm up
    clients = 4
    cap = await capacity(s, clients, 5.0)
    out: dict[str, Any] = {
        "utterances": size,
        "users": users,
        "capacity_rps": cap,
        "capacity_clients": clients,
        "sweep": [],
    }
    for transport in ("rest", "grpc"):
        send = s.rest if transport == "rest" else s.grpc
        for m in tqdm(multiples, desc=f"{size} {transport} sweep", file=sys.stderr):
            row = await step(s, send, m * cap, duration_s, rng, transport)
            out["sweep"].append({"transport": transport, "multiple": m, **row})
    rec = await open_loop(
        poisson_arrivals(0.5 * cap, duration_s, rng),
        lambda i: s.grpc(i, timeout_s=0.030),
        TIMEOUT_S,
    )
    g = rec.summary(duration_s, 0.030)
    g["within_deadline_share"] = round(
        sum(1 for o in rec.outcomes if o.status == 200 and o.latency_s <= 0.030)
        / max(1, len(rec.outcomes)),
        4,
    )
    g["deadline_exceeded"] = sum(1 for o in rec.outcomes if o.status == 504)
    out["grpc_deadline"] = g
    bg = asyncio.create_task(
        open_loop(poisson_arrivals(0.5 * cap, duration_s, rng), s.rest, TIMEOUT_S)
    )
    out["stream"] = await stream_latency(target, duration_s)
    await bg
    small = Searches(target, "beta", queries, 5)
    total = 2 * cap
    flood_t = asyncio.create_task(
        open_loop(poisson_arrivals(total * 10 / 11, duration_s, rng), s.rest, TIMEOUT_S)
    )
    small_rec = await open_loop(
        poisson_arrivals(total / 11, duration_s, rng), small.rest, TIMEOUT_S
    )
    flood_rec = await flood_t
    out["fairness"] = {
        "small": small_rec.summary(duration_s, BUDGET_S),
        "flood": flood_rec.summary(duration_s, BUDGET_S),
    }
    await small.aclose()
    out["mixed"] = [
        {"multiple": m, **(await mixed(s, target, m * cap, duration_s, rng))} for m in (0.5, 1.0)
    ]
    await s.aclose()
    return out
