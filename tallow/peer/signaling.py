"""An asyncio client of the signaling protocol (docs/protocol.md), enough for one peer in one room.

Requests carry an `id` and wait for the reply that echoes it as `re`; everything else the server
sends (peer-joined, peer-left, signal) waits in `events` in arrival order. The server's WebSocket
pings are answered by the library, which is all the liveness the protocol asks of a client.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from tallow.peer.errors import PeerError

CONNECT_TIMEOUT = 15.0


def signaling_url(server: str) -> str:
    """http(s)://host[:port][/...] -> ws(s)://host[:port]/signaling."""
    parts = urlsplit(server)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise PeerError(f"not a server address: {server!r} (expected http(s)://host[:port])")
    return urlunsplit((scheme, parts.netloc, "/signaling", "", ""))


class SignalingError(PeerError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"the server refused: {message} ({code})")
        self.code = code


class Signaling:
    def __init__(self, ws: ClientConnection, welcome: dict[str, Any]) -> None:
        self._ws = ws
        self.peer_id: str = welcome["peer"]
        self.events: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}

    @classmethod
    async def connect(cls, server: str) -> Signaling:
        url = signaling_url(server)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                ws = await connect(url, max_size=1 << 20)
                welcome = json.loads(await ws.recv())
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI, ConnectionClosed) as error:
            raise PeerError(f"cannot reach the Tallow server at {url}: {error}") from None
        if welcome.get("type") != "welcome":
            raise PeerError(f"{url} is not a Tallow signaling endpoint")
        return cls(ws, welcome)

    async def run(self) -> None:
        """Read until the connection closes; then `events` yields None."""
        try:
            async for raw in self._ws:
                message = json.loads(raw)
                waiter = self._pending.pop(message.get("re"), None)
                if waiter is None:
                    await self.events.put(message)
                elif message.get("type") == "error":
                    waiter.set_exception(SignalingError(message["code"], message["message"]))
                else:
                    waiter.set_result(message)
        except ConnectionClosed:
            pass
        finally:
            for waiter in self._pending.values():
                waiter.set_exception(PeerError("the connection to the server closed"))
            await self.events.put(None)

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        number = next(self._ids)
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[number] = waiter
        await self.send({**message, "id": number})
        return await waiter

    async def send(self, message: dict[str, Any]) -> None:
        try:
            await self._ws.send(json.dumps(message, separators=(",", ":")))
        except ConnectionClosed:
            raise PeerError("the connection to the server closed") from None

    async def signal(self, to: str, data: dict[str, Any]) -> None:
        await self.send({"type": "signal", "to": to, "data": data})

    async def close(self) -> None:
        await self._ws.close()
