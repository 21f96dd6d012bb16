"""/signaling over ASGI: the Origin check, admission, and the transport a Session talks through."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs

import attrs

from tallow.http.admission import TOO_MANY, over_connection_limit, refuse_upgrade
from tallow.signaling import protocol as p
from tallow.signaling.service import SignalingService

ASGIReceive = Any
ASGISend = Any


@attrs.define
class AsgiTransport:
    """A Session's view of an accepted ASGI WebSocket."""

    _receive: ASGIReceive
    _send: ASGISend
    _closed: bool = False

    async def receive(self) -> str | bytes | None:
        while not self._closed:
            message = await self._receive()
            if message["type"] == "websocket.receive":
                text = message.get("text")
                return text if text is not None else message.get("bytes") or b""
            if message["type"] == "websocket.disconnect":
                self._closed = True
        return None

    async def send(self, frames: Sequence[bytes]) -> None:
        for frame in frames:
            if self._closed:
                return
            await self._send({"type": "websocket.send", "text": frame.decode()})

    def send_now(self, frame: bytes) -> bool | None:
        return None  # ASGI has no way to try a write without waiting

    async def close(self, code: int, reason: str) -> None:
        if not self._closed:
            self._closed = True
            # The client may already be gone: hypercorn then refuses the close; nothing to do.
            with contextlib.suppress(Exception):
                await self._send({"type": "websocket.close", "code": code, "reason": reason})


async def deny(send: ASGISend, status: int, body: bytes) -> None:
    """Refuse the upgrade with a plain HTTP response (the ASGI WebSocket denial extension)."""
    await send(
        {
            "type": "websocket.http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "websocket.http.response.body", "body": body})


async def serve_signaling(
    service: SignalingService,
    scope: dict[str, Any],
    receive: ASGIReceive,
    send: ASGISend,
    headers: dict[str, str],
    client: str,
) -> None:
    refusal = refuse_upgrade(service, headers.get("origin"), headers.get("host"))
    if refusal is not None:
        await deny(send, *refusal)
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    transport = AsgiTransport(receive, send)
    if over_connection_limit(service, client):
        await transport.close(p.CLOSE_TRY_AGAIN, TOO_MANY)
        return
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    await service.serve(transport, client, query.get("resume", [None])[0])
