"""/signaling over ASGI: the Origin check, admission, and the transport a Session talks through."""

from __future__ import annotations

import contextlib
from typing import Any
from urllib.parse import parse_qs, urlsplit

import attrs

from tallow.config import Settings
from tallow.observability import metrics
from tallow.signaling import protocol as p
from tallow.signaling.service import SignalingService

ASGIReceive = Any
ASGISend = Any


def origin_allowed(origin: str | None, host: str | None, settings: Settings) -> bool:
    """PROTOCOL.md: no Origin (not a browser) is fine; a browser page must be an allowed origin."""
    if origin is None:
        return True
    origin = origin.rstrip("/").lower()
    if settings.allowed_origins:
        return "*" in settings.allowed_origins or origin in settings.allowed_origins
    return host is not None and urlsplit(origin).netloc == host.lower()


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

    async def send(self, frame: bytes) -> None:
        if not self._closed:
            await self._send({"type": "websocket.send", "text": frame.decode()})

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
    settings = service.settings
    if not origin_allowed(headers.get("origin"), headers.get("host"), settings):
        metrics.connections_rejected.labels("origin").inc()
        await deny(send, 403, b'{"error":"origin-not-allowed","message":"origin not allowed"}\n')
        return
    refusal = service.refusal(client)
    if refusal == "draining":
        metrics.connections_rejected.labels("draining").inc()
        await deny(send, 503, b'{"error":"draining","message":"server restarting; retry"}\n')
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    transport = AsgiTransport(receive, send)
    if refusal is not None:
        metrics.connections_rejected.labels(refusal).inc()
        await transport.close(p.CLOSE_TRY_AGAIN, "too many connections from your address")
        return
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    resume = query.get("resume", [None])[0]
    await service.serve(transport, client, resume)
