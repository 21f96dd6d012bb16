"""Every signaling limit: its number, its knob, its error code, and that nothing else is lost."""

from __future__ import annotations

import json

import trio
from trio_websocket import ConnectionClosed, HandshakeError, open_websocket_url

from harness.client import connect
from tests.raw_websocket import TEXT, RawWebSocket, frame_header


async def test_oversize_message_is_refused_then_persistent_abuse_is_closed(start_tallow) -> None:
    server = start_tallow(env={"TALLOW_MAX_MESSAGE_BYTES": "2048", "TALLOW_ABUSE_STRIKES": "3"})
    async with connect(server.ws_url) as alice:
        assert alice.welcome["limits"]["message_bytes"] == 2048
        big = json.dumps({"type": "ping", "pad": "x" * 2100})
        await alice.expect_error(big, "too-large")
        # Multi-byte characters count as bytes, not characters.
        await alice.expect_error(
            json.dumps({"type": "ping", "pad": "é" * 1100}, ensure_ascii=False), "too-large"
        )
        assert await alice.request({"type": "ping"}) == {"type": "pong"}  # strikes reset
        for _ in range(2):
            await alice.expect_error(big, "too-large")
        await alice.send(big)
        assert await alice.closed_code() == 1009


async def test_huge_frame_is_cut_with_1009_without_buffering_it(start_tallow) -> None:
    server = start_tallow(env={"TALLOW_MAX_MESSAGE_BYTES": "4096"})
    raw = RawWebSocket(server.port)
    try:
        raw.handshake()
        assert raw.read_message()[0] == TEXT  # welcome
        # Announce 16 MiB but send only the first 64 KiB: the server must not wait for the rest.
        length = 16 << 20
        raw.sock.sendall(frame_header(TEXT, length) + b"\0\0\0\0" + b"x" * 65536)
        assert raw.close_code() == 1009
    finally:
        raw.close()
    async with connect(server.ws_url) as bob:  # the server itself is unharmed
        assert await bob.request({"type": "ping"}) == {"type": "pong"}


async def test_rate_limit_token_bucket_then_1008(start_tallow) -> None:
    server = start_tallow(
        env={"TALLOW_RATE_LIMIT": "1", "TALLOW_RATE_BURST": "5", "TALLOW_ABUSE_STRIKES": "4"}
    )
    async with connect(server.ws_url) as alice:
        for _ in range(5):
            await alice.send({"type": "ping"})
        for _ in range(3):
            await alice.send({"type": "ping"})
        replies = [await alice.recv() for _ in range(8)]
        assert [r["type"] for r in replies[:5]] == ["pong"] * 5
        assert [r.get("code") for r in replies[5:]] == ["rate-limited"] * 3
        await trio.sleep(1.1)  # one token back
        assert await alice.request({"type": "ping"}) == {"type": "pong"}
        for _ in range(4):
            await alice.send({"type": "ping"})
        assert await alice.closed_code() == 1008


async def test_rate_limit_zero_disables(start_tallow) -> None:
    server = start_tallow(env={"TALLOW_RATE_LIMIT": "0", "TALLOW_RATE_BURST": "1"})
    async with connect(server.ws_url) as alice:
        for _ in range(300):
            await alice.send({"type": "ping"})
        assert [(await alice.recv())["type"] for _ in range(300)] == ["pong"] * 300


async def test_room_capacity(start_tallow) -> None:
    server = start_tallow(env={"TALLOW_MAX_ROOM_PEERS": "2"})
    url = server.ws_url
    async with connect(url) as a, connect(url) as b, connect(url) as c:
        assert a.welcome["limits"]["room_peers"] == 2
        await a.join("small"), await b.join("small")
        await c.expect_error({"type": "join", "room": "SMALL", "id": 1}, "room-full")
        await b.request({"type": "leave"})
        await c.join("small")


async def test_connections_per_ip_limit_closes_1013(start_tallow) -> None:
    server = start_tallow(env={"TALLOW_MAX_CONNECTIONS_PER_IP": "2"})
    async with (
        connect(server.ws_url),
        connect(server.ws_url),
        open_websocket_url(server.ws_url) as third,
    ):
        try:
            with trio.fail_after(5):
                await third.get_message()
            raise AssertionError("the third connection was served")
        except ConnectionClosed as closed:
            assert closed.reason.code == 1013
    async with connect(server.ws_url) as again:  # slots free again once connections close
        assert again.peer


async def test_forwarded_for_is_trusted_only_from_configured_proxies(start_tallow) -> None:
    limited = {"TALLOW_MAX_CONNECTIONS_PER_IP": "1"}
    # Untrusted: X-Forwarded-For is ignored, so both connections count against 127.0.0.1.
    server = start_tallow(env=limited)
    async with connect(server.ws_url, headers=[("X-Forwarded-For", "203.0.113.1")]):
        try:
            async with connect(server.ws_url, headers=[("X-Forwarded-For", "203.0.113.2")]):
                raise AssertionError("a forged X-Forwarded-For was believed")
        except ConnectionClosed as closed:
            assert closed.reason.code == 1013
    # Trusted proxy: each forwarded client has its own allowance.
    proxied = start_tallow(env={**limited, "TALLOW_TRUSTED_PROXIES": "127.0.0.0/8"})
    async with (
        connect(proxied.ws_url, headers=[("X-Forwarded-For", "203.0.113.1")]),
        connect(proxied.ws_url, headers=[("X-Forwarded-For", "203.0.113.2")]) as second,
    ):
        assert second.peer


async def test_origin_check_refuses_other_sites_with_403(start_tallow) -> None:
    server = start_tallow()
    host = f"127.0.0.1:{server.port}"
    async with connect(server.ws_url, headers=[("Origin", f"http://{host}")]) as same:
        assert same.peer
    async with connect(server.ws_url) as no_origin:  # not a browser: accepted
        assert no_origin.peer
    try:
        async with connect(server.ws_url, headers=[("Origin", "https://evil.example")]):
            raise AssertionError("a foreign origin was accepted")
    except HandshakeError as refused:
        assert refused.status_code == 403
    listed = start_tallow(env={"ALLOWED_ORIGINS": "https://tallow.example,https://b.example"})
    async with connect(listed.ws_url, headers=[("Origin", "https://tallow.example")]) as ok:
        assert ok.peer
    try:
        async with connect(listed.ws_url, headers=[("Origin", f"http://127.0.0.1:{listed.port}")]):
            raise AssertionError("same-origin must not pass when ALLOWED_ORIGINS is set")
    except HandshakeError as refused:
        assert refused.status_code == 403


async def test_silent_connection_is_reaped_after_three_heartbeats(start_tallow) -> None:
    server = start_tallow(env={"TALLOW_HEARTBEAT_SECONDS": "1", "TALLOW_RESUME_SECONDS": "0"})
    async with connect(server.ws_url) as watcher:
        await watcher.join("hb")
        # A raw client that upgrades, joins, then never reads or answers a ping again.
        raw = RawWebSocket(server.port)
        raw.handshake()
        raw.send_frame(TEXT, b'{"type":"join","room":"hb"}')
        try:
            joined = await watcher.recv()
            assert joined["type"] == "peer-joined"
            with trio.fail_after(8):  # 3 heartbeats + reaping; generous for a loaded machine
                left = await watcher.recv(timeout=8)
            assert left == {"type": "peer-left", "room": "HB", "peer": joined["peer"]}
        finally:
            raw.close()
