"""Graceful shutdown: not-ready at once, no new connections, 1001 for WebSockets, exit 0."""

from __future__ import annotations

import json
import signal
import socket
import time

import trio

from harness.client import connect
from harness.processes import http_get
from tests.raw_websocket import TEXT, RawWebSocket


async def test_sigterm_closes_websockets_with_1001_and_exits_0(start_tallow) -> None:
    server = start_tallow(env={"TALLOW_DRAIN_SECONDS": "5"})
    async with connect(server.ws_url) as alice, connect(server.ws_url) as bob:
        await alice.join("drain"), await bob.join("drain")
        await alice.recv()
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        assert await alice.closed_code() == 1001
        assert await bob.closed_code() == 1001
    code = await trio.to_thread.run_sync(server.process.wait, 10)
    assert code == 0
    assert time.monotonic() - started < 5
    messages = [entry["msg"] for entry in server.log_entries()]
    assert "draining" in messages and messages[-1] == "stopped"


def test_in_flight_http_finishes_and_new_connections_are_refused(start_tallow) -> None:
    server = start_tallow(env={"TALLOW_DRAIN_SECONDS": "5"})
    conn = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    conn.sendall(b"GET /api/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    server.process.send_signal(signal.SIGTERM)
    answer = b""
    while chunk := conn.recv(65536):
        answer += chunk
    conn.close()
    head, body = answer.split(b"\r\n\r\n", 1)
    # Answered in full: 200, or 503 naming the drain if the signal was handled first.
    assert head.startswith((b"HTTP/1.1 200", b"HTTP/1.1 503")), head
    assert json.loads(body)["checks"]["draining"]["ok"] is head.startswith(b"HTTP/1.1 200")
    assert server.process.wait(10) == 0
    try:
        refused = http_get(server.url + "/api/health", timeout=2)[0]
    except OSError:
        refused = None
    assert refused is None


async def block_on(server) -> RawWebSocket:
    """A client that never reads, with the server's writes to it stuck on full socket buffers."""
    stuck = RawWebSocket(server.port)
    stuck.handshake()
    stuck.send_frame(TEXT, b'{"type":"join","room":"stuck","id":1}')
    async with connect(server.ws_url) as alice:
        joined = await alice.join("stuck")
        if not joined["peers"]:  # the raw client's join may land just after ours
            joined = {"peers": [await alice.recv()]}
        target = joined["peers"][0]["peer"]
        for number in range(300):  # ~18 MB: more than loopback socket buffers hold
            await alice.send({"type": "signal", "to": target, "data": [number, "z" * 60000]})
    await server.wait_metric("tallow_connections_open", 1)  # Alice has gone
    return stuck


async def test_drain_deadline_closes_connections_that_would_hold_it(start_tallow) -> None:
    server = start_tallow(env={"TALLOW_DRAIN_SECONDS": "2", "TALLOW_RATE_LIMIT": "0"})
    stuck = await block_on(server)
    try:
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        assert await trio.to_thread.run_sync(server.process.wait, 15) == 0
        assert 1.5 < time.monotonic() - started < 8
    finally:
        stuck.close()


async def test_a_second_signal_stops_at_once(start_tallow) -> None:
    server = start_tallow(env={"TALLOW_DRAIN_SECONDS": "60", "TALLOW_RATE_LIMIT": "0"})
    stuck = await block_on(server)
    try:
        server.process.send_signal(signal.SIGINT)
        await trio.sleep(1.5)
        assert server.process.poll() is None  # still draining, held by the stuck client
        started = time.monotonic()
        server.process.send_signal(signal.SIGINT)
        assert await trio.to_thread.run_sync(server.process.wait, 10) == 0
        assert time.monotonic() - started < 5
        assert "second signal: stopping now" in server.log()
    finally:
        stuck.close()
