"""A small test client for the signaling protocol, on trio-websocket over real sockets."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

RECEIVE_TIMEOUT = 5.0


class Client:
    def __init__(self, ws: WebSocketConnection, welcome: dict[str, Any]) -> None:
        self.ws = ws
        self.welcome = welcome
        self.peer: str = welcome["peer"]
        self.resume: str = welcome["resume"]

    async def send(self, message: dict[str, Any] | str | bytes) -> None:
        await self.ws.send_message(
            message if isinstance(message, str | bytes) else json.dumps(message)
        )

    async def recv(self, timeout: float = RECEIVE_TIMEOUT) -> dict[str, Any]:
        with trio.fail_after(timeout):
            return json.loads(await self.ws.get_message())

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        await self.send(message)
        return await self.recv()

    async def expect_error(self, message: dict[str, Any] | str | bytes, code: str) -> dict:
        await self.send(message)
        reply = await self.recv()
        assert reply["type"] == "error", reply
        assert reply["code"] == code, reply
        return reply

    async def join(self, room: str, name: str = "", meta: dict | None = None) -> dict[str, Any]:
        reply = await self.request({"type": "join", "room": room, "name": name, "meta": meta or {}})
        assert reply["type"] == "joined", reply
        return reply

    async def closed_code(self, timeout: float = RECEIVE_TIMEOUT) -> int | None:
        """Read until the server closes; the close code."""
        with trio.fail_after(timeout):
            try:
                while True:
                    await self.ws.get_message()
            except ConnectionClosed as closed:
                return closed.reason.code

    async def nothing_pending(self, wait: float = 0.3) -> bool:
        with trio.move_on_after(wait):
            await self.ws.get_message()
            return False
        return True


@asynccontextmanager
async def connect(
    url: str,
    *,
    resume: str | None = None,
    headers: list[tuple[str, str]] | None = None,
    message_size: int = 32 << 20,
) -> AsyncIterator[Client]:
    if resume is not None:
        url = f"{url}?resume={resume}"
    async with open_websocket_url(
        url, extra_headers=headers or [], max_message_size=message_size
    ) as ws:
        with trio.fail_after(RECEIVE_TIMEOUT):
            welcome = json.loads(await ws.get_message())
        assert welcome["type"] == "welcome", welcome
        yield Client(ws, welcome)
