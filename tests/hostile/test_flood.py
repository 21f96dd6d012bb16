"""Overload from one address: message floods, connection floods, many rooms, and a slow reader
that must not grow the server's memory. Bystanders on another address must notice nothing."""

from __future__ import annotations

import json
import socket
import time
from collections import Counter

import trio

from harness.processes import http_get
from harness.procfs import rss_kib
from tallow.signaling import protocol as p
from tests.hostile.conftest import Bystanders, RssPeak, tried
from tests.hostile.wire import Collector, RawClient
from tests.raw_websocket import CLOSE, TEXT, frame_header

ATTACKER = "127.0.0.66"


def masked_frame(payload: bytes) -> bytes:
    return frame_header(TEXT, len(payload)) + b"\0\0\0\0" + payload  # an all-zero mask


def rejected(server, reason: str) -> float:
    body = http_get(server.url + "/api/metrics")[2].decode()
    for line in body.splitlines():
        if line.startswith(f'tallow_connections_rejected_total{{reason="{reason}"}}'):
            return float(line.split()[1])
    return 0.0


def flood(port: int, burst: int, cap: int = 3000) -> tuple[Counter[str], int | None]:
    """Send a burst of pings at full speed and read the replies, then keep sending one at a time
    until the server closes. (Sending past the close would make the kernel answer with a reset
    that discards the close frame, so the flood stops just short of the strikes.)"""
    flooder = RawClient.connect(port, ATTACKER)
    codes: Counter[str] = Counter()
    try:
        flooder.sock.sendall(b"".join(masked_frame(b'{"type":"ping"}') for _ in range(burst)))
        for _ in range(burst):
            reply = flooder.recv_json()
            codes[reply.get("code", reply["type"])] += 1
        for _ in range(cap):
            flooder.send_frame(TEXT, b'{"type":"ping"}')
            opcode, payload = flooder.read_message()
            if opcode == CLOSE:
                return codes, int.from_bytes(payload[:2], "big")
            reply = json.loads(payload)
            codes[reply.get("code", reply["type"])] += 1
        return codes, None
    finally:
        tried("flood messages", sum(codes.values()))
        flooder.close()


async def test_message_flood_is_rate_limited_then_closed_with_1008(start_tallow) -> None:
    """Defaults: 50 messages/s, bursts of 200, 20 strikes."""
    server = start_tallow()
    with Bystanders(server.port) as bystanders:
        codes, close_code = await trio.to_thread.run_sync(flood, server.port, 210)
        assert close_code == p.CLOSE_POLICY, codes
        assert set(codes) == {"pong", p.RATE_LIMITED}, codes
        assert 200 <= codes["pong"] < 300, codes  # the burst, plus what refilled meanwhile
        assert codes[p.RATE_LIMITED] >= 19, codes  # the 20th strike's error comes with the close
        await trio.sleep(0.5)
    bystanders.check()
    assert max(bystanders.rounds) < 2.0, max(bystanders.rounds)


async def test_connection_flood_from_one_address_gets_1013(start_tallow) -> None:
    """Default TALLOW_MAX_CONNECTIONS_PER_IP (64); the 36 beyond are closed right after upgrade."""
    server = start_tallow()
    with Bystanders(server.port) as bystanders:
        admitted, refused = [], 0
        for _ in range(100):
            client = RawClient(server.port, ATTACKER)
            client.handshake()
            kind, payload = client.read_message()
            if kind == TEXT:
                admitted.append(client)
            else:
                refused += 1
                assert int.from_bytes(payload[:2], "big") == p.CLOSE_TRY_AGAIN
                client.close()
        tried("flood connections", 100)
        assert len(admitted) == 64 and refused == 36
        assert rejected(server, "per-ip-limit") == 36
        for client in admitted:
            client.shut()
        await server.wait_metric("tallow_connections_open", 2)  # the bystanders
        RawClient.connect(server.port, ATTACKER).shut()  # slots come back
    bystanders.check()


async def test_many_rooms_from_one_address_are_bounded_by_its_connections(start_tallow) -> None:
    server = start_tallow(env={"TALLOW_MAX_CONNECTIONS_PER_IP": "20", "TALLOW_RESUME_SECONDS": "1"})
    squatters = [RawClient.connect(server.port, ATTACKER) for _ in range(20)]
    for number, client in enumerate(squatters):
        assert client.request({"type": "join", "room": f"squat-{number}"})["type"] == "joined"
    # One connection holds one room at a time: join/leave cycles and `create` leave nothing.
    churner = squatters[0]
    for number in range(60):  # 181 messages: inside the burst of 200
        assert churner.request({"type": "leave"})["type"] == "left"
        assert churner.request({"type": "join", "room": f"churn-{number}"})["type"] == "joined"
        assert churner.request({"type": "create"})["type"] == "created"
    tried("room joins and creates", 20 + 180)
    await server.wait_metric("tallow_rooms_active", 20)
    extra = RawClient(server.port, ATTACKER)
    extra.handshake()
    assert int.from_bytes(extra.read_message()[1][:2], "big") == p.CLOSE_TRY_AGAIN
    extra.close()
    for client in squatters:
        client.shut()
    await server.wait_metric("tallow_rooms_active", 0)  # after the 1 s grace
    await server.wait_metric("tallow_peers_active", 0)


def flood_slow_reader(server, rounds: int, messages: int) -> list[int]:
    """Each round: a reader that never reads joins; a sender pushes ``messages`` broadcasts of
    ~60 KB at it. Returns the server's peak RSS (KiB) per round."""
    chunk = "y" * 60000
    peaks = []
    for number in range(rounds):
        reader = RawClient.connect(server.port, "127.0.0.71", timeout=60)
        reader.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sender = RawClient.connect(server.port, "127.0.0.72", timeout=60)
        room = f"slow-{number}"
        assert reader.request({"type": "join", "room": room})["type"] == "joined"
        assert sender.request({"type": "join", "room": room})["type"] == "joined"
        replies = Collector(sender)
        started = time.monotonic()
        with RssPeak(server.process.pid) as rss:
            for index in range(messages):
                # Broadcast: no reply per message, so the flooder is not a slow reader itself.
                sender.send_json({"type": "broadcast", "data": [index, chunk]})
            sender.send_json({"type": "ping", "id": "done"})
            deadline = time.monotonic() + 60
            while not any(r.get("re") == "done" for r in replies.replies):
                assert time.monotonic() < deadline, replies.codes()
                time.sleep(0.05)
        print(f"slow reader round {number}: {time.monotonic() - started:.1f} s")
        tried("slow-reader flood messages", messages)
        codes = replies.codes()
        assert set(codes) <= {"pong", "peer-left"}, codes  # no error: the server kept up
        reader.close()  # cut with 1013 long ago (tests/integration/test_resume.py reads it)
        replies.stop()
        peaks.append(rss.peak)
    return peaks


async def test_slow_reader_cannot_grow_server_memory_without_bound(start_tallow) -> None:
    """Send queue 64, resume queue 64, frames of 60 KB: a slow peer may hold its outbox (room for
    2 x 64 + 64 frames) and its resume queue (64) for its grace, about 15 MB. Each round floods
    120 MB at a peer that never reads: a server that buffered it would grow by that much."""
    server = start_tallow(
        env={
            "TALLOW_RATE_LIMIT": "0",
            "TALLOW_SEND_QUEUE": "64",
            "TALLOW_RESUME_QUEUE": "64",
            "TALLOW_RESUME_SECONDS": "1",
        }
    )
    baseline = rss_kib(server.process.pid)
    peaks = await trio.to_thread.run_sync(flood_slow_reader, server, 2, 2000)
    growth = [(peak - baseline) // 1024 for peak in peaks]
    print(f"slow reader: baseline {baseline // 1024} MiB, peak growth per round {growth} MiB")
    held = (2 * 64 + 64 + 64) * 60000 // (1 << 20)
    assert max(growth) < 2 * held + 48, (growth, held)  # transient copies and allocator slack
    await server.wait_metric("tallow_connections_open", 0, timeout=20)
    await server.wait_metric("tallow_peers_active", 0, timeout=10)
