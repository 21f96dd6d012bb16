"""/api/ice-servers, proven against a real coturn with turnutils_uclient."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from harness.processes import http_get
from tallow.http.ice import turn_rest_credentials
from tests.coturn import Coturn, run_coturn


@pytest.fixture
def coturn(tmp_path) -> Coturn:
    with run_coturn(tmp_path) as server:
        yield server


def allocate(coturn: Coturn, username: str, credential: str) -> subprocess.CompletedProcess:
    """One TURN allocation plus a short relayed exchange (-y: client to client)."""
    return subprocess.run(
        ["turnutils_uclient", "-y", "-n", "1", "-m", "1", "-l", "100", "-u", username,
         "-w", credential, "-p", str(coturn.port), "127.0.0.1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def ice(server) -> tuple[dict, dict[str, str]]:
    status, headers, body = http_get(server.url + "/api/ice-servers")
    assert status == 200
    return json.loads(body), headers


def test_turn_rest_credentials_allocate_on_coturn(start_tallow, coturn) -> None:
    server = start_tallow(
        env={
            "TURN_URLS": coturn.url,
            "TURN_SECRET": coturn.secret,
            "TURN_TTL": "600",
            "STUN_URLS": f"stun:127.0.0.1:{coturn.port}",
        }
    )
    answer, headers = ice(server)
    assert headers["cache-control"] == "no-store"
    stun, turn = answer["iceServers"]
    assert stun == {"urls": [f"stun:127.0.0.1:{coturn.port}"]}
    assert turn["urls"] == [coturn.url]
    expiry, _, ident = turn["username"].partition(":")
    assert abs(int(expiry) - (time.time() + 600)) < 30 and ident
    assert answer["ttl"] == 600
    assert ice(server)[0]["iceServers"][1]["username"] != turn["username"]  # fresh each time
    result = allocate(coturn, turn["username"], turn["credential"])
    assert result.returncode == 0, result.stdout[-2000:]
    assert "Total lost packets 0" in result.stdout


def test_wrong_secret_does_not_allocate(start_tallow, coturn) -> None:
    server = start_tallow(env={"TURN_URLS": coturn.url, "TURN_SECRET": "not-the-secret"})
    turn = ice(server)[0]["iceServers"][0]
    result = allocate(coturn, turn["username"], turn["credential"])
    assert result.returncode != 0 and "Cannot complete Allocation" in result.stdout


def test_expired_username_does_not_allocate(coturn) -> None:
    username, credential = turn_rest_credentials(coturn.secret, 60, now=time.time() - 3600)
    result = allocate(coturn, username, credential)
    assert result.returncode != 0 and "Cannot complete Allocation" in result.stdout


def test_static_credentials_and_stun_only(start_tallow) -> None:
    static = start_tallow(
        env={
            "TURN_URLS": "turns:turn.example:5349",
            "TURN_USERNAME": "alice",
            "TURN_CREDENTIAL": "pw",
        }
    )
    assert ice(static)[0]["iceServers"] == [
        {"urls": ["turns:turn.example:5349"], "username": "alice", "credential": "pw"}
    ]
    stun_only = start_tallow(env={"STUN_URLS": "stun:stun.example:3478,stun:b.example"})
    assert ice(stun_only)[0]["iceServers"] == [
        {"urls": ["stun:stun.example:3478", "stun:b.example"]}
    ]
    nothing = start_tallow()
    assert ice(nothing)[0]["iceServers"] == []
