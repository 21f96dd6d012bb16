"""tallow.peer.signaling against real servers on loopback: Tallow's, and small stand-ins that
misbehave (not Tallow, or gone mid-request), for the errors a user of `tallow send` sees."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from harness.processes import free_port
from tallow.peer.errors import PeerError
from tallow.peer.signaling import Signaling, SignalingError, signaling_url


def run(scenario: Callable[[], Awaitable[Any]]) -> Any:
    """``asyncio.run(scenario())`` in a thread of its own: the browser tests' Playwright keeps an
    event loop running in the main thread, where asyncio.run refuses to start another."""
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, scenario()).result()


def test_server_addresses_become_signaling_urls() -> None:
    assert signaling_url("http://example.org") == "ws://example.org/signaling"
    assert signaling_url("https://example.org:8443/x?y") == "wss://example.org:8443/signaling"
    for bad in ("ftp://example.org", "example.org", "http://"):
        with pytest.raises(PeerError, match="not a server address"):
            signaling_url(bad)


def test_a_request_refused_by_tallow_raises_its_code(tallow_server: Any) -> None:
    async def scenario() -> None:
        signaling = await Signaling.connect(tallow_server.url)
        reader = asyncio.create_task(signaling.run())
        try:
            created = await signaling.request({"type": "create"})
            assert created["type"] == "created"
            with pytest.raises(SignalingError, match="bad-room") as refused:
                await signaling.request({"type": "join", "room": "not a room!"})
            assert refused.value.code == "bad-room"
        finally:
            await signaling.close()
            await reader
        assert await signaling.events.get() is None  # the end, after the close

    run(scenario)


def test_nothing_listening_is_cannot_reach() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(PeerError, match="cannot reach the Tallow server"):
        run(lambda: Signaling.connect(url))


async def stand_in(handler: Callable[[ServerConnection], Awaitable[None]]) -> tuple[Any, str]:
    port = free_port()
    server = await serve(handler, "127.0.0.1", port)
    return server, f"http://127.0.0.1:{port}"


def test_a_websocket_that_is_not_tallow_is_named_so() -> None:
    async def hello(ws: ServerConnection) -> None:
        await ws.send(json.dumps({"type": "hello"}))
        await ws.wait_closed()

    async def scenario() -> None:
        server, url = await stand_in(hello)
        async with server:
            with pytest.raises(PeerError, match="is not a Tallow signaling endpoint"):
                await Signaling.connect(url)

    run(scenario)


def test_a_server_gone_mid_request_fails_the_request_and_later_sends() -> None:
    async def welcome_then_leave(ws: ServerConnection) -> None:
        await ws.send(json.dumps({"type": "welcome", "peer": "p1"}))
        await ws.recv()  # the request: never answered
        await ws.close()

    async def scenario() -> None:
        server, url = await stand_in(welcome_then_leave)
        async with server:
            signaling = await Signaling.connect(url)
            assert signaling.peer_id == "p1"
            reader = asyncio.create_task(signaling.run())
            with pytest.raises(PeerError, match="connection to the server closed"):
                await signaling.request({"type": "create"})
            await reader
            with pytest.raises(PeerError, match="connection to the server closed"):
                await signaling.signal("p2", {"x": 1})

    run(scenario)
