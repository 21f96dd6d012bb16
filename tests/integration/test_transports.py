"""Both ways a WebSocket reaches /signaling, and the first-request guard in front of them."""

from __future__ import annotations

import json
import socket
import time

from harness.client import connect
from tests.raw_websocket import HANDSHAKE, TEXT, RawWebSocket, frame_header, masked


def test_upgrade_on_a_kept_alive_connection_uses_the_asgi_path(tallow_server) -> None:
    raw = RawWebSocket(tallow_server.port)
    try:
        raw.sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        while b"\r\n\r\n" not in raw.buffer:
            raw._fill()
        head, raw.buffer = raw.buffer.split(b"\r\n\r\n", 1)
        length = int(
            next(
                line.split(b":")[1]
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
        )
        raw._take(length)
        assert head.startswith(b"HTTP/1.1 200")
        raw.handshake()  # the same TCP connection, now upgraded by hypercorn
        welcome = json.loads(raw.read_message()[1])
        assert welcome["type"] == "welcome"
        raw.send_frame(TEXT, b'{"type":"ping","id":1}')
        assert json.loads(raw.read_message()[1]) == {"type": "pong", "re": 1}
    finally:
        raw.close()


async def test_both_paths_talk_to_each_other(tallow_server) -> None:
    raw = RawWebSocket(tallow_server.port)
    try:
        raw.sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        while not raw.buffer.endswith(b"}\n"):  # the end of the JSON health answer
            raw._fill()
        raw.buffer = b""
        raw.handshake()
        asgi_peer = json.loads(raw.read_message()[1])["peer"]
        raw.send_frame(TEXT, b'{"type":"join","room":"mixed"}')
        assert json.loads(raw.read_message()[1])["type"] == "joined"
        async with connect(tallow_server.ws_url) as direct:
            await direct.join("mixed")
            await direct.send({"type": "signal", "to": asgi_peer, "data": "hi"})
            assert json.loads(raw.read_message()[1]) == {
                "type": "peer-joined",
                "room": "MIXED",
                "peer": direct.peer,
                "name": "",
                "meta": {},
            }
            assert json.loads(raw.read_message()[1]) == {
                "type": "signal",
                "from": direct.peer,
                "data": "hi",
            }
    finally:
        raw.close()


def test_frames_sent_before_the_101_are_read_in_order(tallow_server) -> None:
    payload = b'{"type":"ping","id":"early"}'
    mask = b"\x01\x02\x03\x04"
    with socket.create_connection(("127.0.0.1", tallow_server.port), timeout=10) as sock:
        sock.sendall(HANDSHAKE + frame_header(TEXT, len(payload)) + mask + masked(payload, mask))
        raw = RawWebSocket.__new__(RawWebSocket)
        raw.sock, raw.buffer = sock, b""
        while b"\r\n\r\n" not in raw.buffer:
            raw._fill()
        head, raw.buffer = raw.buffer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101")
        assert json.loads(raw.read_message()[1])["type"] == "welcome"
        assert json.loads(raw.read_message()[1]) == {"type": "pong", "re": "early"}


def test_slow_request_heads_are_cut(start_tallow) -> None:
    server = start_tallow(env={"TALLOW_HEADER_TIMEOUT": "1"})
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n")  # ... and nothing more
        started = time.monotonic()
        assert sock.recv(100) == b""  # closed by the server
        assert 0.5 < time.monotonic() - started < 5


def test_invalid_utf8_in_a_text_frame_closes_with_1007(tallow_server) -> None:
    raw = RawWebSocket(tallow_server.port)
    try:
        raw.handshake()
        raw.read_message()
        raw.send_frame(TEXT, b'{"type":"ping","x":"\xff\xfe"}')
        assert raw.close_code() == 1007
    finally:
        raw.close()


def test_oversize_first_request_head_gets_431(tallow_server) -> None:
    filler = b"X-Filler: " + b"a" * 20000 + b"\r\n"
    with socket.create_connection(("127.0.0.1", tallow_server.port), timeout=10) as sock:
        sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n" + filler + b"\r\n")
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 431")
    with socket.create_connection(("127.0.0.1", tallow_server.port), timeout=10) as sock:
        small = b"X-Filler: " + b"a" * 10000 + b"\r\n"
        sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n" + small + b"\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
