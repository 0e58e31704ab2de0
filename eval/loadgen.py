"""An open-loop load generator: Poisson arrivals, a lean HTTP/1.1 client, latency records.

Open loop: each request is sent at its scheduled arrival time whether or not earlier ones
have answered, and its latency counts from that time, so a slow server cannot slow the
offered load down and hide its own queueing (no coordinated omission). The HTTP client is a
few lines over asyncio streams with kept-alive connections: httpx costs about a millisecond
of CPU per request, which on a 2-core machine would be taken from the server under test.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(slots=True)
class Outcome:
    """One request: when it was due, how long it took, what came back."""

    due: float
    latency_s: float
    status: int  # HTTP status, or 0 for no answer in time / a failed connection
    degraded: bool = False


@dataclass
class Record:
    outcomes: list[Outcome] = field(default_factory=list)

    def summary(self, duration_s: float, budget_s: float) -> dict[str, Any]:
        """Client p50/p99 of answered and of admitted requests, goodput, shed share."""
        ok = [o for o in self.outcomes if o.status == 200]
        shed = [o for o in self.outcomes if o.status == 429]
        answered = [o for o in self.outcomes if o.status]
        n = len(self.outcomes)

        def pct(xs: list[Outcome]) -> dict[str, float | None]:
            if not xs:
                return {"p50": None, "p99": None}
            a = np.asarray([o.latency_s * 1000 for o in xs])
            return {
                "p50": round(float(np.percentile(a, 50)), 2),
                "p99": round(float(np.percentile(a, 99)), 2),
            }

        in_budget = [o for o in ok if o.latency_s <= budget_s]
        return {
            "sent": n,
            "offered_rps": round(n / duration_s, 1),
            "ok": len(ok),
            "goodput_rps": round(len(in_budget) / duration_s, 1),
            "shed_share": round(len(shed) / n, 4) if n else 0.0,
            "no_answer_share": round((n - len(answered)) / n, 4) if n else 0.0,
            "other_errors": sum(1 for o in answered if o.status not in (200, 429)),
            "statuses": {
                str(code): sum(1 for o in self.outcomes if o.status == code)
                for code in sorted({o.status for o in self.outcomes})
            },
            "degraded_share": round(sum(o.degraded for o in ok) / len(ok), 4) if ok else 0.0,
            "admitted_ms": pct(ok),
            "shed_ms": pct(shed),
        }


def poisson_arrivals(rate: float, duration_s: float, rng: np.random.Generator) -> list[float]:
    """Arrival offsets in [0, duration_s) of a Poisson process of ``rate`` per second."""
    if rate <= 0:
        return []
    gaps = rng.exponential(1.0 / rate, size=int(rate * duration_s * 1.5) + 16)
    times = np.cumsum(gaps)
    return [float(t) for t in times[times < duration_s]]


async def open_loop(
    arrivals: list[float], send: Callable[[int], Awaitable[tuple[int, bool]]], timeout_s: float
) -> Record:
    """Fire ``send(i)`` at each arrival offset; wait for all to finish or time out."""
    record = Record()
    loop = asyncio.get_running_loop()
    t0 = loop.time() + 0.05

    async def one(i: int, due: float) -> None:
        try:
            status, degraded = await asyncio.wait_for(send(i), timeout_s)
        except (TimeoutError, OSError, ConnectionError, asyncio.IncompleteReadError):
            status, degraded = 0, False
        record.outcomes.append(Outcome(due, loop.time() - due, status, degraded))

    tasks = []
    for i, offset in enumerate(arrivals):
        due = t0 + offset
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    return record


class HttpPool:
    """Kept-alive HTTP/1.1 connections to one host; a request waits for a free one."""

    def __init__(self, host: str, port: int, *, size: int = 64, headers: dict[str, str]) -> None:
        self._host, self._port = host, port
        self._free: asyncio.LifoQueue[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None]
        self._free = asyncio.LifoQueue()
        for _ in range(size):
            self._free.put_nowait(None)  # opened on first use
        self._open: set[asyncio.StreamWriter] = set()
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self._head = f"Host: {host}:{port}\r\n{extra}Content-Type: application/json\r\n"

    async def post(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        raw = json.dumps(body).encode()
        request = (
            f"POST {path} HTTP/1.1\r\n{self._head}Content-Length: {len(raw)}\r\n\r\n".encode() + raw
        )
        conn = await self._free.get()
        try:
            for _ in range(2):  # a kept-alive connection the server closed: once more, fresh
                fresh = conn is None
                if conn is None:
                    conn = await asyncio.open_connection(self._host, self._port)
                    self._open.add(conn[1])
                reader, writer = conn
                writer.write(request)
                status_line = await reader.readline()
                if status_line or fresh:
                    break
                writer.close()
                self._open.discard(writer)
                conn = None
            if not status_line:
                raise ConnectionError("the server closed the connection")
            status = int(status_line.split()[1])
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            payload = await reader.readexactly(length)
            self._free.put_nowait(conn)
            conn = None
            return status, json.loads(payload) if payload else {}
        except BaseException:
            if conn is not None:
                conn[1].close()
                self._open.discard(conn[1])
            self._free.put_nowait(None)  # a fresh connection next time
            raise

    async def aclose(self) -> None:
        for writer in self._open:
            writer.close()
        for writer in self._open:
            try:
                await writer.wait_closed()
            except (OSError, ConnectionError):
                pass
        self._open.clear()
