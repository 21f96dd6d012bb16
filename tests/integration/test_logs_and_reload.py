"""Logs (JSON lines, console format, no secrets) and `tallow serve --reload`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import tallow
from harness.client import connect
from harness.processes import free_port, http_get

SECRETS = {
    "METRICS_TOKEN": "metrics-secret-1",
    "TURN_SECRET": "turn-secret-2",
    "TURN_URLS": "turn:turn.example:3478",
}


async def test_json_logs_carry_request_ids_and_never_secrets(start_tallow) -> None:
    server = start_tallow(env=SECRETS)
    async with connect(server.ws_url) as first:
        token = first.resume
        await first.join("logs", "Alice")
    async with connect(server.ws_url, resume=token) as again:
        assert again.peer == first.peer
    http_get(server.url + "/api/metrics", {"Authorization": "Bearer metrics-secret-1"})
    http_get(server.url + "/api/ice-servers")
    assert server.terminate() == 0
    lines = server.log().splitlines()
    assert lines and all(line.startswith("{") for line in lines)
    entries = [json.loads(line) for line in lines]
    assert all({"ts", "level", "logger", "msg", "node"} <= entry.keys() for entry in entries)
    requests = [e for e in entries if e["msg"] in ("request", "websocket")]
    assert requests and all(len(e["request_id"]) == 32 for e in requests)
    text = server.log()
    for secret in [*SECRETS.values(), token, again.resume]:
        if secret.startswith("turn:"):
            continue
        assert secret not in text, secret


def test_console_format_is_one_readable_line_per_event(start_tallow) -> None:
    server = start_tallow(env={"LOG_FORMAT": "console"})
    http_get(server.url + "/api/health")
    server.terminate()
    log = server.log()
    assert "INFO    tallow.server: listening" in log
    assert "tallow.http: request  method=GET path=/api/health status=200" in log
    assert not any(line.startswith("{") for line in log.splitlines())


def test_reload_restarts_the_server_when_code_changes(tmp_path) -> None:
    port = free_port()
    log = (tmp_path / "reload.log").open("wb")
    parent = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tallow",
            "serve",
            "--reload",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env={**os.environ, "LOG_FORMAT": "json"},
        stdout=log,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}/api/health"

    def uptime(deadline: float = 30) -> float:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            try:
                return json.loads(http_get(url, timeout=1)[2])["uptime"]
            except (OSError, ValueError):
                time.sleep(0.1)
        raise TimeoutError((tmp_path / "reload.log").read_text())

    try:
        uptime()
        time.sleep(1.5)
        before = uptime()
        source = os.path.join(os.path.dirname(tallow.__file__), "__init__.py")
        os.utime(source)  # a code change, as an editor saving the file makes it
        end = time.monotonic() + 30
        while uptime() >= before and time.monotonic() < end:
            time.sleep(0.2)
        assert uptime() < before, "the server did not restart"
        assert "code changed, restarting" in (tmp_path / "reload.log").read_text()
    finally:
        parent.terminate()
        assert parent.wait(30) == 0
        log.close()
    time.sleep(0.5)
    try:
        http_get(url, timeout=1)
        raise AssertionError("the child server outlived its parent")
    except OSError:
        pass
