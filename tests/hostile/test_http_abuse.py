"""Hostile HTTP: slowloris, descriptor exhaustion, bodies nobody asked for, huge headers, odd
methods and paths. A new connection has TALLOW_HEADER_TIMEOUT for its first request head; a
kept-alive one has hypercorn's keep-alive timeout (5 s) for the next. No route reads a body, so a
body never holds a connection.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from urllib.parse import quote

import pytest
import trio
from hypercorn.config import Config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.processes import http_get
from harness.procfs import open_fds, rss_kib
from tallow.http.headers import CONTENT_SECURITY_POLICY
from tests.hostile.conftest import RssPeak, tried

HEADER_TIMEOUT = 2.0  # TALLOW_HEADER_TIMEOUT of the servers here (default 10 s)
KEEP_ALIVE_TIMEOUT = Config().keep_alive_timeout  # hypercorn's, which tallow leaves as it is
FUZZ = settings(
    max_examples=int(os.environ.get("HOSTILE_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)


def open_socket(port: int, source: str = "127.0.0.1", timeout: float = 30.0) -> socket.socket:
    return socket.create_connection(
        ("127.0.0.1", port), timeout=timeout, source_address=(source, 0)
    )


def read_all(conn: socket.socket) -> bytes:
    answer = b""
    try:
        while chunk := conn.recv(65536):
            answer += chunk
    except ConnectionResetError:
        pass
    return answer


def exchange(port: int, request: bytes) -> bytes:
    with open_socket(port, timeout=10) as conn:
        conn.sendall(request)
        return read_all(conn)


@pytest.fixture(scope="module")
def web(module_server, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ui")
    (folder / "ui").mkdir()
    (folder / "ui" / "index.html").write_text("<html>ui</html>")
    (folder / "ui" / "app-0123abcd.js").write_text("// app")
    (folder / "secret.txt").write_text("TOP SECRET")
    return module_server(
        env={"TALLOW_STATIC_DIR": str(folder / "ui"), "TALLOW_HEADER_TIMEOUT": str(HEADER_TIMEOUT)}
    )


def trickle_until_closed(
    port: int, gap: float, budget: float, first: bytes = b""
) -> tuple[float, bytes]:
    """Send ``first`` at once, then a request head one byte every ``gap`` seconds; when the
    server hangs up (seconds after ``first`` was answered), and what it said after that."""
    head = b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200 + b"\r\n\r\n"
    with open_socket(port) as conn:
        if first:
            conn.sendall(first)
            answered = b""
            while b'"status"' not in answered:
                answered += conn.recv(65536)
        started = time.monotonic()
        for byte in head:
            if time.monotonic() - started > budget:
                break
            try:
                conn.sendall(bytes([byte]))
            except OSError:
                break
            conn.settimeout(gap)
            try:
                if conn.recv(1, socket.MSG_PEEK) == b"":
                    break
            except TimeoutError:
                continue
            except OSError:
                break
        conn.settimeout(5)
        return time.monotonic() - started, read_all(conn)


def test_slowloris_request_head_is_cut_at_the_header_timeout(web) -> None:
    """Bytes keep arriving (so no read timeout fires), but the head is never done."""
    took, said = trickle_until_closed(web.port, gap=0.25, budget=20)
    tried("slowloris connections")
    assert HEADER_TIMEOUT - 0.5 < took < HEADER_TIMEOUT + 4, took
    assert said == b""  # closed without a response: there was no request


def test_slowloris_on_a_kept_alive_connection_is_cut_at_the_keep_alive_timeout(web) -> None:
    first = b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n"
    took, said = trickle_until_closed(web.port, gap=0.25, budget=20, first=first)
    tried("slowloris connections")
    assert KEEP_ALIVE_TIMEOUT - 0.5 < took < KEEP_ALIVE_TIMEOUT + 4, took
    assert said == b""


async def test_many_slowloris_connections_then_the_server_serves_again(start_tallow) -> None:
    """300 connections that never finish a head, against a process allowed 256 descriptors: the
    server survives the exhaustion, and serves again once the header timeout frees them."""
    server = start_tallow(
        env={"TALLOW_HEADER_TIMEOUT": str(HEADER_TIMEOUT)},
        command=["prlimit", "--nofile=256", sys.executable, "-m", "tallow"],
    )
    baseline = open_fds(server.process.pid)
    held = []
    for index in range(300):
        try:
            conn = open_socket(server.port, f"127.0.1.{index % 250 + 1}", timeout=2)
            conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finished
            held.append(conn)
        except OSError:
            break
    tried("slowloris connections", len(held))
    started = time.monotonic()
    with trio.fail_after(30):
        while True:
            try:
                status = (await trio.to_thread.run_sync(http_get, server.url + "/api/health"))[0]
                if status == 200:
                    break
            except OSError:
                pass
            await trio.sleep(0.2)
    recovered = time.monotonic() - started
    print(f"slowloris: {len(held)} connections held, served again after {recovered:.1f} s")
    assert recovered < HEADER_TIMEOUT + 10
    assert server.process.poll() is None
    assert "Too many open files" in server.log()  # the exhaustion did happen
    for conn in held:
        conn.close()
    with trio.fail_after(15):
        while open_fds(server.process.pid) > baseline + 2:
            await trio.sleep(0.2)


def test_a_body_nobody_reads_does_not_hold_the_connection_or_memory(web) -> None:
    """POST with a 1 GiB Content-Length: answered 405 at once and the connection closed; then
    100 MiB actually streamed at a GET route: memory stays put."""
    started = time.monotonic()
    answer = exchange(
        web.port, b"POST /api/health HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 405"), answer[:80]
    assert time.monotonic() - started < 5
    before = rss_kib(web.process.pid)
    chunk = b"z" * (1 << 20)
    with RssPeak(web.process.pid) as rss, open_socket(web.port) as conn:
        conn.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        sent = 0
        try:
            for _ in range(100):
                conn.sendall(b"100000\r\n" + chunk + b"\r\n")
                sent += 1
        except OSError:
            pass  # answered and closed: the rest is refused, which is the point
        tried("unread request bodies", 2)
    assert (rss.peak - before) < 24 * 1024, (before, rss.peak)


@pytest.mark.parametrize("size", [17_000, 65_000, 100_000, 1_000_000])
def test_oversized_request_heads_are_refused(web, size: int) -> None:
    """Refused beyond 16 KiB (docs/configuration.md), however it arrives."""
    head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * size + b"\r\n\r\n"
    try:
        answer = exchange(web.port, head)
    except (BrokenPipeError, ConnectionResetError):
        answer = b""  # refused while we were still sending
    tried("oversized request heads")
    assert answer == b"" or answer.startswith((b"HTTP/1.1 431", b"HTTP/1.1 400")), answer[:80]
    assert http_get(web.url + "/api/health")[0] == 200


methods = st.sampled_from(["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"]) | (
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ-_!#$%&'*+.^`|~", min_size=1, max_size=20)
)
paths = st.sampled_from(["/", "/api/health", "/api/ready", "/api/metrics", "/api/ice-servers"])


@FUZZ
@given(method=methods, path=paths)
def test_only_get_and_head_anywhere(web, method: str, path: str) -> None:
    request = f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    answer = exchange(web.port, request.encode())
    tried("HTTP methods")
    if method in ("GET", "HEAD"):
        return
    status = answer[9:12]
    assert status in (b"405", b"400"), (method, answer[:100])
    if status == b"405":
        assert b"\r\nallow: GET, HEAD\r\n" in answer.lower().replace(
            b"allow: get, head", b"allow: GET, HEAD"
        )


segments = st.sampled_from(
    [
        "..",
        ".",
        "%2e%2e",
        "%2E%2E",
        "..%2f",
        "%2f",
        "%00",
        "\\..",
        "secret.txt",
        "ui",
        "",
        ".hidden",
        "index.html",
        "%c0%ae%c0%ae",
        "..;",
        "%252e%252e",
        "app-0123abcd.js",
    ]
) | st.text(min_size=1, max_size=8).map(lambda text: quote(text, safe=""))


@FUZZ
@given(parts=st.lists(segments, min_size=1, max_size=6))
def test_no_path_reaches_outside_the_ui_folder(web, parts: list[str]) -> None:
    target = ("/" + "/".join(parts)).encode()
    answer = exchange(
        web.port, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    tried("static paths")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"TOP SECRET" not in body, target
    assert head[9:12] in (b"200", b"304", b"400", b"404"), (target, head[:80])
    if head[9:12] == b"200":
        assert body in (b"<html>ui</html>", b"// app") or b'"status"' in body, (target, body[:80])
    if head[9:12] in (b"200", b"404"):
        assert CONTENT_SECURITY_POLICY.encode() in head, target


def test_security_headers_on_every_kind_of_answer(start_tallow) -> None:
    server = start_tallow(env={"METRICS_TOKEN": "t0ken"})
    for path, method, status in (
        ("/", "GET", 200),
        ("/api/health", "HEAD", 200),
        ("/api/metrics", "GET", 401),
        ("/api/health", "DELETE", 405),
        ("/nothing.js", "GET", 404),
        ("/signaling", "GET", 426),
        ("/api/ice-servers", "GET", 200),
    ):
        got, headers, _ = http_get(server.url + path, method=method)
        assert got == status, (path, got)
        for name, value in (
            ("content-security-policy", CONTENT_SECURITY_POLICY),
            ("x-content-type-options", "nosniff"),
            ("x-frame-options", "DENY"),
            ("referrer-policy", "no-referrer"),
            ("cross-origin-opener-policy", "same-origin"),
        ):
            assert headers.get(name) == value, (path, name, headers.get(name))
