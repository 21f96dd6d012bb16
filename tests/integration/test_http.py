"""Probes, metrics, security headers, request ids and the static UI, over real HTTP."""

from __future__ import annotations

import json
import socket

from harness.client import connect
from harness.processes import http_get
from tallow.http.headers import CONTENT_SECURITY_POLICY


def test_health_is_liveness_with_identity(tallow_server) -> None:
    status, headers, body = http_get(tallow_server.url + "/api/health")
    health = json.loads(body)
    assert status == 200 and headers["content-type"] == "application/json"
    assert health["status"] == "ok" and health["service"] == "tallow"
    assert health["version"] and health["node"] == f"test-{tallow_server.port}"
    assert health["uptime"] >= 0
    status, headers, body = http_get(tallow_server.url + "/api/health", method="HEAD")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0


def test_ready_names_each_check(tallow_server) -> None:
    status, headers, body = http_get(tallow_server.url + "/api/ready")
    ready = json.loads(body)
    assert status == 200 and ready["status"] == "ready"
    assert set(ready["checks"]) == {"pqc", "broker", "draining", "config"}
    assert all(check["ok"] for check in ready["checks"].values())
    assert ready["checks"]["pqc"]["backend"] == "cryptography"
    assert ready["checks"]["pqc"]["algorithms"] == ["ML-KEM-768", "ML-DSA-65"]
    assert ready["checks"]["broker"]["broker"] == "memory"
    assert headers["cache-control"] == "no-store"


async def test_metrics_count_connections_messages_errors_and_requests(tallow_server) -> None:
    async with connect(tallow_server.ws_url) as alice, connect(tallow_server.ws_url) as bob:
        await alice.join("m"), await bob.join("m")
        await alice.recv()
        await alice.send({"type": "signal", "to": bob.peer, "data": 1})
        await bob.recv()
        await alice.expect_error({"type": "bogus"}, "unknown-type")
        http_get(tallow_server.url + "/api/health")
        http_get(tallow_server.url + "/no/such/page")
        await tallow_server.wait_metric("tallow_rooms_active", 1)
        status, headers, body = http_get(tallow_server.url + "/api/metrics")
    text = body.decode()
    assert status == 200 and headers["content-type"].startswith("text/plain")
    for line in (
        "tallow_connections_open 2.0",
        "tallow_peers_active 2.0",
        'tallow_messages_handled_total{type="join"} 2.0',
        'tallow_messages_handled_total{type="signal"} 1.0',
        'tallow_signaling_errors_total{code="unknown-type"} 1.0',
        'tallow_http_requests_total{method="GET",route="health",status="200"}',
        'tallow_http_requests_total{method="GET",route="not-found",status="404"} 1.0',
        'tallow_http_request_duration_seconds_bucket{le="0.005",route="health"}',
        "tallow_broker_rtt_seconds_count",
        'tallow_build_info{broker="memory",role="all"',
    ):
        assert line in text, line
    assert "/no/such/page" not in text  # route names only, never raw paths


def test_metrics_token_is_required_when_set(start_tallow) -> None:
    server = start_tallow(env={"METRICS_TOKEN": "s3cret-token"})
    assert http_get(server.url + "/api/metrics")[0] == 401
    assert http_get(server.url + "/api/metrics", {"Authorization": "Bearer wrong"})[0] == 401
    status, _, body = http_get(
        server.url + "/api/metrics", {"Authorization": "Bearer s3cret-token"}
    )
    assert status == 200 and b"tallow_up 1.0" in body
    assert "s3cret-token" not in server.log()


def test_security_headers_on_every_response(tallow_server) -> None:
    for path in ("/", "/api/health", "/api/ready", "/no-such-file.js"):
        headers = http_get(tallow_server.url + path)[1]
        assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY
        assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
        assert "strict-transport-security" not in headers  # plain HTTP, no trusted proxy


def test_hsts_only_for_tls_through_a_trusted_proxy(start_tallow) -> None:
    untrusted = start_tallow()
    headers = http_get(untrusted.url + "/", {"X-Forwarded-Proto": "https"})[1]
    assert "strict-transport-security" not in headers
    proxied = start_tallow(env={"TALLOW_TRUSTED_PROXIES": "127.0.0.1"})
    headers = http_get(proxied.url + "/", {"X-Forwarded-Proto": "https"})[1]
    assert headers["strict-transport-security"].startswith("max-age=")


def test_request_id_is_taken_or_made_echoed_and_logged(tallow_server) -> None:
    headers = http_get(tallow_server.url + "/api/health", {"X-Request-ID": "abc-123"})[1]
    assert headers["x-request-id"] == "abc-123"
    made = http_get(tallow_server.url + "/api/health")[1]["x-request-id"]
    assert len(made) == 32
    evil = http_get(tallow_server.url + "/api/health", {"X-Request-ID": "a b\u00e9<script>"})[1]
    assert evil["x-request-id"] != "a b\u00e9<script>"
    logged = {entry.get("request_id") for entry in tallow_server.log_entries()}
    assert {"abc-123", made} <= logged


def test_ui_is_served_with_types_and_validators(tallow_server) -> None:
    status, headers, body = http_get(tallow_server.url + "/")
    assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
    assert b"<html" in body.lower()
    etag, modified = headers["etag"], headers["last-modified"]
    assert headers["cache-control"] == "no-cache"
    assert http_get(tallow_server.url + "/", {"If-None-Match": etag})[0] == 304
    assert http_get(tallow_server.url + "/", {"If-Modified-Since": modified})[0] == 304
    assert http_get(tallow_server.url + "/index.html")[2] == body


def test_fingerprinted_assets_are_immutable(tmp_path, start_tallow) -> None:
    (tmp_path / "ui").mkdir()
    (tmp_path / "ui" / "index.html").write_text("<html></html>")
    (tmp_path / "ui" / "app-3f9a1c2b.js").write_text("console.log(1)")
    (tmp_path / "ui" / "style.css").write_text("body{}")
    server = start_tallow(env={"TALLOW_STATIC_DIR": str(tmp_path / "ui")})
    status, headers, _ = http_get(server.url + "/app-3f9a1c2b.js")
    assert status == 200 and headers["content-type"] == "text/javascript; charset=utf-8"
    assert headers["cache-control"] == "public, max-age=31536000, immutable"
    status, headers, _ = http_get(server.url + "/style.css")
    assert headers["content-type"] == "text/css; charset=utf-8"
    assert headers["cache-control"] == "no-cache"


def raw_request(port: int, target: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


def test_no_path_traversal_and_a_real_404(tmp_path, start_tallow) -> None:
    (tmp_path / "ui").mkdir()
    (tmp_path / "ui" / "index.html").write_text("<html></html>")
    (tmp_path / "secret.txt").write_text("TOP SECRET")
    (tmp_path / "ui" / ".hidden.txt").write_text("hidden")
    server = start_tallow(env={"TALLOW_STATIC_DIR": str(tmp_path / "ui")})
    for target in (
        b"/../secret.txt",
        b"/%2e%2e/secret.txt",
        b"/..%2fsecret.txt",
        b"/.hidden.txt",
        b"//etc/passwd",
        b"/ui/../../secret.txt",
        b"/%2e%2e%2fsecret.txt",
        b"/index.html%00.js",
        b"/\\..\\secret.txt",
    ):
        answer = raw_request(server.port, target)
        assert answer.startswith(b"HTTP/1.1 404") or answer.startswith(b"HTTP/1.1 400"), target
        assert b"TOP SECRET" not in answer and b"hidden" not in answer.split(b"\r\n\r\n")[1]
    status, _, body = http_get(server.url + "/missing.html")
    assert status == 404 and json.loads(body)["error"] == "not-found"


def test_methods_other_than_get_and_head_are_refused(tallow_server) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        status, headers, _ = http_get(tallow_server.url + "/api/health", method=method)
        assert status == 405 and headers["allow"] == "GET, HEAD"


def test_roles_split_the_routes(start_tallow) -> None:
    web = start_tallow(args=["--role", "web"])
    assert http_get(web.url + "/")[0] == 200
    assert http_get(web.url + "/api/ice-servers")[0] == 200
    assert http_get(web.url + "/signaling")[0] == 404
    signaling = start_tallow(args=["--role", "signaling"])
    assert http_get(signaling.url + "/health")[0] == 200
    assert http_get(signaling.url + "/api/ready")[0] == 200
    assert http_get(signaling.url + "/")[0] == 404
    assert http_get(signaling.url + "/api/ice-servers")[0] == 404
    assert http_get(signaling.url + "/signaling")[0] == 426
