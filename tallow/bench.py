"""``tallow bench``: a closed-loop load generator for any Tallow deployment (ws:// or wss://).

Each pair of peers shares a room of its own. The first peer keeps ``inflight`` signals in flight
to the second, which echoes each one back; every echo that returns is one round trip (two relayed
messages) and makes room for the next send. The figures are relayed messages per second, round
trip percentiles, connections per second, and every error the server answered.
"""

from __future__ import annotations

import contextlib
import math
import secrets
import ssl
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import orjson
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

CONNECT_TIMEOUT = 30.0


@attrs.define
class BenchResult:
    url: str
    pairs: int
    seconds: float
    payload_bytes: int
    inflight: int
    relayed: int = 0
    round_trips: list[float] = attrs.Factory(list)
    errors: Counter[str] = attrs.Factory(Counter)
    connect_seconds: float = 0.0

    @property
    def messages_per_second(self) -> float:
        return self.relayed / self.seconds if self.seconds else 0.0

    @property
    def connections_per_second(self) -> float:
        return 2 * self.pairs / self.connect_seconds if self.connect_seconds else 0.0

    def percentile(self, fraction: float) -> float:
        if not self.round_trips:
            return math.nan
        ordered = sorted(self.round_trips)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]

    def summary(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "pairs": self.pairs,
            "seconds": round(self.seconds, 3),
            "payload_bytes": self.payload_bytes,
            "inflight": self.inflight,
            "relayed_messages": self.relayed,
            "messages_per_second": round(self.messages_per_second, 1),
            "rtt_ms": {
                "p50": round(self.percentile(0.50) * 1000, 3),
                "p99": round(self.percentile(0.99) * 1000, 3),
                "max": round(max(self.round_trips, default=math.nan) * 1000, 3),
            },
            "connections_per_second": round(self.connections_per_second, 1),
            "errors": dict(self.errors),
        }


async def _open(
    url: str, context: ssl.SSLContext | None, stack: trio.Nursery
) -> tuple[WebSocketConnection, str]:
    """Connect one peer (its lifetime bound to ``stack``) and read its welcome."""
    opened: list[Any] = []

    async def hold(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with open_websocket_url(url, ssl_context=context) as ws:
            opened.append(ws)
            task_status.started()
            await trio.sleep_forever()

    await stack.start(hold)
    ws = opened[0]
    welcome = orjson.loads(await ws.get_message())
    return ws, welcome["peer"]


async def _join(ws: WebSocketConnection, room: str) -> None:
    await ws.send_message(orjson.dumps({"type": "join", "room": room, "name": "bench"}).decode())
    while (reply := orjson.loads(await ws.get_message()))["type"] != "joined":
        if reply["type"] == "error":
            raise RuntimeError(f"join failed: {reply['code']}")


class _Pair:
    def __init__(self, result: BenchResult, payload: str) -> None:
        self.result = result
        self.payload = payload

    async def echo(self, ws: WebSocketConnection, partner: str) -> None:
        """The second peer: send every signal straight back."""
        with self._counting_closes():
            await self._echo(ws, partner)

    async def drive(self, ws: WebSocketConnection, partner: str, stop_at: float) -> None:
        with self._counting_closes():
            await self._drive(ws, partner, stop_at)

    @contextlib.contextmanager
    def _counting_closes(self) -> Iterator[None]:
        try:
            yield
        except ConnectionClosed as closed:  # e.g. the server cut an abusive rate: report it
            # trio-websocket leaves the reason unset when the stream broke without a close
            # frame: count that as the abnormal closure (1006) it is.
            code = closed.reason.code if closed.reason is not None else 1006
            self.result.errors[f"closed-{code}"] += 1

    async def _echo(self, ws: WebSocketConnection, partner: str) -> None:
        while True:
            message = orjson.loads(await ws.get_message())
            if message["type"] == "signal":
                reply = {"type": "signal", "to": partner, "data": message["data"]}
                await ws.send_message(orjson.dumps(reply).decode())
            elif message["type"] == "error":
                self.result.errors[message["code"]] += 1

    async def _drive(self, ws: WebSocketConnection, partner: str, stop_at: float) -> None:
        """The first peer: keep ``inflight`` signals travelling, timing each round trip."""

        async def send() -> None:
            data = {"t": time.perf_counter(), "p": self.payload}
            await ws.send_message(
                orjson.dumps({"type": "signal", "to": partner, "data": data}).decode()
            )

        for _ in range(self.result.inflight):
            await send()
        while True:
            message = orjson.loads(await ws.get_message())
            now = time.perf_counter()
            if message["type"] == "signal" and now <= stop_at:
                self.result.round_trips.append(now - message["data"]["t"])
                self.result.relayed += 2
                await send()
            elif message["type"] == "error":
                self.result.errors[message["code"]] += 1
                if time.perf_counter() < stop_at:
                    await send()  # keep the loop closed: a refused message still frees a slot


async def run_bench(
    url: str,
    *,
    pairs: int,
    seconds: float,
    payload_bytes: int,
    inflight: int,
    insecure: bool = False,
    progress: Callable[[BenchResult, float], None] | None = None,
) -> BenchResult:
    result = BenchResult(url, pairs, seconds, payload_bytes, inflight)
    context = None
    if url.startswith("wss://"):
        context = ssl.create_default_context()
        if insecure:
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    pair = _Pair(result, "x" * payload_bytes)
    async with trio.open_nursery() as connections:
        started = time.perf_counter()
        peers: list[tuple[WebSocketConnection, str, WebSocketConnection, str]] = []
        with trio.fail_after(CONNECT_TIMEOUT):
            for _ in range(pairs):
                first, first_id = await _open(url, context, connections)
                second, second_id = await _open(url, context, connections)
                room = "bench-" + secrets.token_hex(8)
                await _join(first, room)
                await _join(second, room)
                peers.append((first, first_id, second, second_id))
        result.connect_seconds = time.perf_counter() - started
        # The first peer learns of the second through peer-joined, read by drive() and ignored.
        began = time.perf_counter()
        stop_at = began + seconds
        async with trio.open_nursery() as traffic:
            for first, first_id, second, second_id in peers:
                traffic.start_soon(pair.drive, first, second_id, stop_at)
                traffic.start_soon(pair.echo, second, first_id)
            if progress is not None:
                traffic.start_soon(_report, result, began, stop_at, progress)
            await trio.sleep_until(trio.current_time() + seconds + 1.0)  # let the last ones land
            traffic.cancel_scope.cancel()
        result.seconds = seconds
        connections.cancel_scope.cancel()
    return result


async def _report(
    result: BenchResult,
    began: float,
    stop_at: float,
    progress: Callable[[BenchResult, float], None],
) -> None:
    while time.perf_counter() < stop_at:
        await trio.sleep(1.0)
        progress(result, time.perf_counter() - began)
