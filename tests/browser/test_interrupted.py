"""A handshake whose signals a dying server replica may have taken with it starts over.

Two replicas share a real redis-server. The web app runs in Chromium on one; the other person is
a plain WebSocket client on the other replica, whose process is SIGKILLed mid-handshake. When the
client resumes on the surviving replica, the room hears `peer-interrupted` (docs/protocol.md) and
the page must start the handshake again instead of waiting for messages that will never come
(until its 25 s connect timeout failed the peer for good).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from harness.redis import RedisServer
from tests.browser import app

# Well under the web app's CONNECT_TIMEOUT_MS (25 s), after which the old session would fail.
START_OVER_WITHIN_S = 15
ROOM = "interrupted-handshake"


@pytest.fixture
def two_replicas(start_tallow: Any, tmp_path: Path) -> Iterator[tuple[Any, Any]]:
    redis = RedisServer(tmp_path / "redis").start()
    env = {"REDIS_URL": redis.url, "TALLOW_RESUME_SECONDS": "20"}
    yield start_tallow(env=env), start_tallow(env=env)
    redis.kill()


def next_signal(ws: ClientConnection, wanted: str, deadline: float) -> dict[str, Any]:
    """The next relayed signal whose data is of type ``wanted``, skipping everything else."""
    while (left := deadline - time.monotonic()) > 0:
        try:
            message = json.loads(ws.recv(timeout=left))
        except TimeoutError:
            break
        if message["type"] == "signal" and message["data"].get("t") == wanted:
            return message
    raise AssertionError(f"no {wanted!r} signal in time")


@contextmanager
def client(url: str, room: str | None = ROOM, resume: str | None = None) -> Iterator[Any]:
    """A WebSocket client on ``url`` (joined to ``room``): it and its resume token."""
    with connect(f"{url}?resume={resume}" if resume else url) as ws:
        welcome = json.loads(ws.recv(timeout=10))
        assert welcome["type"] == "welcome" and welcome.get("resumed", False) == bool(resume)
        if room:
            ws.send(json.dumps({"type": "join", "room": room}))
            assert json.loads(ws.recv(timeout=10))["type"] == "joined"
        yield ws, welcome["resume"]


def sigkill(replica: Any) -> None:
    """The replica dies with its connections open (what it held for them is lost)."""
    replica.process.kill()
    replica.process.wait()


def test_the_initiator_starts_a_new_session_when_its_peers_replica_died(
    two_replicas, new_page
) -> None:
    doomed, survivor = two_replicas
    with client(doomed.ws_url) as (responder, token):
        page = new_page()
        app.join_room(page, f"{survivor.url}/#room={ROOM}")  # joins later: the initiator
        first = next_signal(responder, "hs1", time.monotonic() + 30)
        sigkill(doomed)
    with client(survivor.ws_url, room=None, resume=token) as (resumed, _):
        again = next_signal(resumed, "hs1", time.monotonic() + START_OVER_WITHIN_S)
    assert again["from"] == first["from"] and again["data"] != first["data"]  # a new session


def test_the_responder_asks_for_a_new_session_when_its_peers_replica_died(
    two_replicas, new_page
) -> None:
    doomed, survivor = two_replicas
    page = new_page()
    app.join_room(page, f"{survivor.url}/#room={ROOM}")  # first in the room: the responder
    with client(doomed.ws_url) as (_, token):
        page.get_by_test_id("peer").wait_for()  # heard of the initiator; its hs1 never comes
        sigkill(doomed)
    with client(survivor.ws_url, room=None, resume=token) as (resumed, _):
        next_signal(resumed, "restart", time.monotonic() + START_OVER_WITHIN_S)


def test_a_restart_asked_for_during_the_handshake_starts_a_new_session(
    tallow_server, new_page
) -> None:
    with client(tallow_server.ws_url) as (responder, _):
        page = new_page()
        app.join_room(page, f"{tallow_server.url}/#room={ROOM}")
        first = next_signal(responder, "hs1", time.monotonic() + 30)
        restart = {"type": "signal", "to": first["from"], "data": {"t": "restart"}}
        responder.send(json.dumps(restart))
        again = next_signal(responder, "hs1", time.monotonic() + START_OVER_WITHIN_S)
    assert again["data"] != first["data"]
