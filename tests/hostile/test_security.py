"""Security properties over real sockets: Origin and X-Forwarded-For cannot be forged, the ids
and tokens the server makes are unguessable, and no secret ever reaches a log line."""

from __future__ import annotations

import base64
import math
import os
import re
import socket
import subprocess
import sys
from collections import Counter
from urllib.parse import quote

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.client import connect
from harness.processes import http_get
from harness.redis import RedisServer
from tallow.signaling.rooms import ALPHABET, ENTROPY_BITS
from tests.hostile.conftest import tried
from tests.hostile.wire import RawClient

FUZZ = settings(
    max_examples=int(os.environ.get("HOSTILE_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)


def upgrade(
    port: int, headers: dict[str, str], *, kept_alive: bool = False, target: str = "/signaling"
) -> bytes:
    """The status line answering a /signaling upgrade: on a fresh connection (the direct path)
    or after a first request on a kept-alive one (handed back by hypercorn)."""
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    request = (
        f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        f"Sec-WebSocket-Version: 13\r\n{extra}\r\n"
    ).encode("latin-1")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        if kept_alive:
            conn.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while b'"status"' not in answer:
                answer += conn.recv(65536)
        conn.sendall(request)
        answer = b""
        while b"\r\n" not in answer:
            chunk = conn.recv(65536)
            if not chunk:
                break
            answer += chunk
    return answer.split(b"\r\n", 1)[0]


@pytest.fixture(scope="module")
def same_origin(module_server):
    return module_server()


def same_origin_variants(port: int) -> list[str]:
    return [f"http://127.0.0.1:{port}", f"HTTP://127.0.0.1:{port}/", f"https://127.0.0.1:{port}"]


def foreign_variants(port: int) -> list[str]:
    return [
        "null",
        "",
        f"http://127.0.0.1:{port}.evil.example",
        f"http://evil.example/127.0.0.1:{port}",
        f"http://127.0.0.1:{port}@evil.example",
        f"http://evil.example#127.0.0.1:{port}",
        f"http://evil.example?127.0.0.1:{port}",
        "http://127.0.0.1",
        f"http://localhost:{port}",
        f"http://127.0.0.1:{port}, http://evil.example",
        f"http://127.0.0.1:{port}\tx",
        f"http://127.0.0.2:{port}",
    ]


@pytest.mark.parametrize("kept_alive", [False, True], ids=["direct", "asgi"])
def test_origin_lookalikes_are_refused_on_both_paths(same_origin, kept_alive: bool) -> None:
    port = same_origin.port
    for origin in same_origin_variants(port):
        assert upgrade(port, {"Origin": origin}, kept_alive=kept_alive).startswith(
            b"HTTP/1.1 101"
        ), origin
    for origin in foreign_variants(port):
        status = upgrade(port, {"Origin": origin}, kept_alive=kept_alive)
        tried("forged Origin headers")
        assert status.startswith((b"HTTP/1.1 403", b"HTTP/1.1 400")), (origin, status)


@FUZZ
@given(origin=st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=60))
def test_random_origins_are_refused(same_origin, origin: str) -> None:
    """Random text never names this server's host and port, so it is never a same origin."""
    status = upgrade(same_origin.port, {"Origin": origin})
    tried("forged Origin headers")
    assert status.startswith((b"HTTP/1.1 403", b"HTTP/1.1 400")), (origin, status)


def logged_clients(server) -> list[str]:
    return [e["client"] for e in server.log_entries() if e.get("msg") == "websocket"]


def test_forwarded_for_only_from_the_configured_proxy(start_tallow) -> None:
    server = start_tallow(env={"TALLOW_TRUSTED_PROXIES": "127.0.0.1"})
    cases = [  # (connect from, X-Forwarded-For sent, client the server must see)
        ("127.0.0.1", "203.0.113.1", "203.0.113.1"),
        ("127.0.0.1", "198.51.100.7, 203.0.113.2", "203.0.113.2"),  # forged hop on the left
        ("127.0.0.1", "203.0.113.3, 127.0.0.1", "203.0.113.3"),  # trusted hops skipped
        ("127.0.0.2", "203.0.113.4", "127.0.0.2"),  # not a proxy: header ignored
        ("127.0.0.3", "127.0.0.1", "127.0.0.3"),
    ]
    for source, forwarded, _expected in cases:
        client = RawClient(server.port, source)
        client.sock.sendall(
            b"GET /signaling HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            b"X-Forwarded-For: " + forwarded.encode() + b"\r\n\r\n"
        )
        assert client.sock.recv(12) == b"HTTP/1.1 101"
        client.close()
        tried("forged X-Forwarded-For headers")
    assert logged_clients(server)[-len(cases) :] == [case[2] for case in cases]


def bits_set(values: list[bytes]) -> float:
    ones = sum(bin(byte).count("1") for value in values for byte in value)
    return ones / (8 * sum(len(value) for value in values))


async def test_room_codes_peer_ids_and_resume_tokens_are_unguessable(start_tallow) -> None:
    """docs/protocol.md: room codes 60 bits (12 Crockford base32 symbols), peer ids 128 bits
    (22 URL-safe characters), resume tokens 256 bits (43), all from the OS CSPRNG. Over the wire:
    the right shapes, no repeats, every symbol about equally often, and half the bits set."""
    server = start_tallow(env={"TALLOW_RATE_LIMIT": "0"})
    async with connect(server.ws_url) as client:
        codes = []
        for batch in range(6):  # in batches: a client that never reads is cut off (1013)
            for number in range(500):
                await client.send({"type": "create", "id": batch * 500 + number})
            for _ in range(500):
                codes.append((await client.recv())["room"])
    assert ENTROPY_BITS == 60 and len(ALPHABET) == 32
    assert all(re.fullmatch(rf"[{ALPHABET}]{{4}}(-[{ALPHABET}]{{4}}){{2}}", c) for c in codes)
    assert len(set(codes)) == len(codes)
    symbols = Counter("".join(codes).replace("-", ""))
    expected = 3000 * 12 / 32
    chi_square = sum((symbols[s] - expected) ** 2 / expected for s in ALPHABET)
    assert chi_square < 90, symbols  # 31 degrees of freedom: p < 1e-6 beyond 90
    peers, tokens = [], []
    for _ in range(150):
        async with connect(server.ws_url) as client:
            peers.append(client.peer)
            tokens.append(client.resume)
    assert all(len(peer) == 22 for peer in peers) and all(len(t) == 43 for t in tokens)
    raw_peers = [base64.urlsafe_b64decode(peer + "==") for peer in peers]
    raw_tokens = [base64.urlsafe_b64decode(token + "=") for token in tokens]
    assert {len(r) for r in raw_peers} == {16} and {len(r) for r in raw_tokens} == {32}
    assert len(set(peers)) == 150 and len(set(tokens)) == 150
    # 150 x 128 and 150 x 256 bits: a fair source sets 50% +- 0.6% (3 sigma) of them.
    for raw in (raw_peers, raw_tokens):
        assert math.isclose(bits_set(raw), 0.5, abs_tol=0.02), bits_set(raw)


def tallow_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tallow", "config"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )


SECRETS = {
    "redis": "redis-Pa55word-abc123",
    "metrics": "metrics-T0ken-def456",
    "turn": "turn-S3cret-ghi789",
    "credential": "turn-Cr3dential-jkl012",
}


async def test_no_secret_in_any_log_line(tmp_path, start_tallow) -> None:
    """Every secret setting, plus what the server derives or hands out (TURN credentials, resume
    tokens), in every path that logs: start-up, requests (also with the token in the query), a
    wrong metrics token, resumes on both WebSocket paths, a Redis outage and a wrong Redis
    password, and the drain. Then the logs (debug level) are searched for each."""
    redis = RedisServer(tmp_path / "redis", extra=["--requirepass", SECRETS["redis"]])
    redis.cli_args = ["-a", SECRETS["redis"], "--no-auth-warning"]
    redis.start()
    env = {
        "LOG_LEVEL": "debug",
        "REDIS_URL": f"redis://:{SECRETS['redis']}@127.0.0.1:{redis.port}/0",
        "METRICS_TOKEN": SECRETS["metrics"],
        "TURN_URLS": "turn:127.0.0.1:3478",
        "TURN_SECRET": SECRETS["turn"],
        "TURN_USERNAME": "user",
        "TURN_CREDENTIAL": SECRETS["credential"],
    }
    try:
        server = start_tallow(env=env)
        wrong = start_tallow(
            env={**env, "REDIS_URL": f"redis://:wrong-{SECRETS['redis']}@127.0.0.1:{redis.port}"}
        )
        handed_out = []
        ice = http_get(server.url + "/api/ice-servers")[2].decode()
        handed_out += re.findall(r'"credential":"([^"]+)"', ice)
        auth = {"Authorization": f"Bearer {SECRETS['metrics']}"}
        assert http_get(server.url + "/api/metrics", auth)[0] == 200
        assert http_get(server.url + "/api/metrics", {"Authorization": "Bearer nope"})[0] == 401
        async with connect(server.ws_url) as first:
            await first.join("secret-room")
            handed_out.append(first.resume)
        http_get(server.url + "/?resume=" + quote(first.resume))
        async with connect(server.ws_url, resume=first.resume) as again:
            assert again.welcome.get("resumed") is True
            handed_out.append(again.resume)
        target = "/signaling?resume=" + again.resume  # now handed back by hypercorn
        assert upgrade(server.port, {}, kept_alive=True, target=target) == b"HTTP/1.1 101 "
        redis.kill()
        await trio.sleep(1.5)
        http_get(server.url + "/api/ready")
        redis.start()
        await trio.sleep(1.5)
        config = await trio.to_thread.run_sync(tallow_config, env)
        # Exit codes are not the point here (a drain right after a Redis restart can end with
        # a traceback: reported separately); every line logged on the way out is searched too.
        server.terminate(), wrong.terminate()
    finally:
        redis.kill()
    logs = server.log() + wrong.log() + config.stdout + config.stderr
    assert '"level":"warning"' in wrong.log() or '"level":"error"' in wrong.log()  # it did log
    # The outage was logged too: by whichever noticed first, a command or the subscription.
    outage = ("redis unavailable", "subscription lost", "subscription closed")
    assert any(what in server.log() for what in outage), server.log()
    assert len(handed_out) >= 3
    for secret in [*SECRETS.values(), *handed_out]:
        tried("secrets searched for in logs")
        assert secret not in logs, secret
        assert quote(secret) not in logs, secret
