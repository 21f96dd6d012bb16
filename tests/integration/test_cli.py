"""The operator's contract: serve, check, config, version, and clear start-up errors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from harness.processes import free_port
from tallow import __version__
from tallow.config import SETTINGS

TALLOW = [sys.executable, "-m", "tallow"]


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in {s.env for s in SETTINGS}}
    return subprocess.run(
        [*TALLOW, *args],
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_version() -> None:
    result = run("version")
    assert result.returncode == 0 and result.stdout.strip() == f"tallow {__version__}"


def test_console_script_entry_point() -> None:
    script = os.path.join(os.path.dirname(sys.executable), "tallow")
    result = subprocess.run([script, "version"], capture_output=True, text=True, timeout=30)
    assert result.stdout.strip() == f"tallow {__version__}"


@pytest.mark.parametrize(
    ("env", "flags", "named"),
    [
        ({"TALLOW_PORT": "eighty"}, [], "TALLOW_PORT"),
        ({"TALLOW_PORT": "70000"}, [], "TALLOW_PORT"),
        ({}, ["--port", "-1"], "--port / TALLOW_PORT"),
        ({"TALLOW_ROLE": "proxy"}, [], "TALLOW_ROLE"),
        ({"REDIS_URL": "http://redis"}, [], "REDIS_URL"),
        ({"REDIS_URL": "redis+sentinel://:pw@h1:26379,h2:26379"}, [], "REDIS_URL"),
        ({"ALLOWED_ORIGINS": "example.com"}, [], "ALLOWED_ORIGINS"),
        ({"TURN_URLS": "http://turn"}, [], "TURN_URLS"),
        ({"TURN_URLS": "turn:turn.example:3478"}, [], "TURN_URLS"),
        ({"TALLOW_TRUSTED_PROXIES": "not-an-ip"}, [], "TALLOW_TRUSTED_PROXIES"),
        ({"TALLOW_RATE_LIMIT": "fast"}, [], "TALLOW_RATE_LIMIT"),
        ({"LOG_LEVEL": "loud"}, [], "LOG_LEVEL"),
        ({"TALLOW_MAX_ROOM_PEERS": "1"}, [], "TALLOW_MAX_ROOM_PEERS"),
        ({"TALLOW_PQC_BACKEND": "rot13"}, [], "TALLOW_PQC_BACKEND"),
    ],
)
def test_bad_values_stop_start_up_with_one_clear_line(env, flags, named) -> None:
    result = run("serve", *flags, env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"tallow: configuration error: {named}")


def test_unavailable_liboqs_backend_is_a_clear_error_not_a_hang() -> None:
    result = run("serve", env={"TALLOW_PQC_BACKEND": "liboqs"}, timeout=15)
    assert result.returncode == 2
    assert "TALLOW_PQC_BACKEND" in result.stderr and "liboqs" in result.stderr


def test_config_prints_every_setting_with_secrets_masked() -> None:
    result = run(
        "config",
        "--turn-secret",
        "flag-secret",
        env={
            "REDIS_URL": "redis://user:hunter2@redis.internal:6379/0",
            "METRICS_TOKEN": "token-value",
            "TURN_URLS": "turn:turn.example:3478",
        },
    )
    assert result.returncode == 0, result.stderr
    shown = dict(line.split("=", 1) for line in result.stdout.splitlines())
    assert set(shown) == {setting.env for setting in SETTINGS}
    assert shown["REDIS_URL"] == "redis://user:***@redis.internal:6379/0"
    assert shown["METRICS_TOKEN"] == "***" and shown["TURN_SECRET"] == "***"
    assert shown["TURN_URLS"] == "turn:turn.example:3478"
    assert shown["TALLOW_PORT"] == "3000"
    for secret in ("hunter2", "token-value", "flag-secret"):
        assert secret not in result.stdout


def test_config_shows_the_multi_host_sentinel_url_masked() -> None:
    url = "redis+sentinel://:hunter2@h1:26379,h2:26379/mymaster"
    result = run("config", env={"REDIS_URL": url})
    assert result.returncode == 0, result.stderr
    assert "REDIS_URL=redis+sentinel://:***@h1:26379,h2:26379/mymaster/0" in result.stdout
    assert "hunter2" not in result.stdout


def test_flags_beat_environment() -> None:
    result = run("config", "--port", "4001", env={"TALLOW_PORT": "4000"})
    assert "TALLOW_PORT=4001" in result.stdout.splitlines()


def test_check_reports_healthy_and_unhealthy(tallow_server) -> None:
    healthy = run("check", tallow_server.url)
    assert healthy.returncode == 0 and healthy.stdout.startswith("healthy:")
    ready = run("check", "--ready", tallow_server.url)
    assert ready.returncode == 0 and "/api/ready" in ready.stdout
    default_port = run("check", env={"TALLOW_PORT": str(tallow_server.port)})
    assert default_port.returncode == 0
    missing = run("check", tallow_server.url + "/api/nothing")
    assert missing.returncode == 1 and "HTTP 404" in missing.stderr
    nobody = run("check", f"http://127.0.0.1:{free_port()}", timeout=15)
    assert nobody.returncode == 1 and nobody.stderr.startswith("unhealthy:")


def test_port_in_use_is_a_clear_error(tallow_server) -> None:
    result = run("serve", "--host", "127.0.0.1", "--port", str(tallow_server.port))
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{tallow_server.port}" in result.stderr
