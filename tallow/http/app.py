"""The ASGI application hypercorn runs: dispatch, request ids, security headers, access logs."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from tallow.http import routes
from tallow.http.clients import client_address
from tallow.http.headers import security_headers
from tallow.http.listener import taken_over
from tallow.http.messages import Request, Response, error, request_id
from tallow.http.static import PACKAGE_STATIC, StaticFiles
from tallow.http.upgrade import Handshake, joined_headers, serve_upgrade
from tallow.observability import metrics
from tallow.observability.logs import event
from tallow.runtime import Runtime

log = logging.getLogger("tallow.http")


def _headers(scope: dict[str, Any]) -> dict[str, str]:
    return joined_headers(
        (name.decode("latin-1").lower(), value.decode("latin-1"))
        for name, value in scope["headers"]
    )


async def _deny(send: Any, status: int, body: bytes) -> None:
    """Refuse an upgrade with a plain HTTP response (the ASGI WebSocket denial extension)."""
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": body})


class TallowApp:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        static_dir = runtime.settings.static_dir
        self.static = StaticFiles(PACKAGE_STATIC if static_dir is None else Path(static_dir))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)

    def _request(self, scope: dict[str, Any], headers: dict[str, str]) -> Request:
        settings = self.runtime.settings
        peer = (scope.get("client") or ("", 0))[0]
        client, via_proxy = client_address(
            peer, headers.get("x-forwarded-for"), settings.trusted_proxies
        )
        https = scope.get("scheme") in ("https", "wss") or (
            via_proxy and headers.get("x-forwarded-proto", "").lower() == "https"
        )
        return Request(
            scope.get("method", "GET"),
            scope["path"],
            scope.get("query_string", b"").decode("latin-1"),
            headers,
            client,
            https,
            request_id(headers.get("x-request-id")),
        )

    async def _route(self, request: Request) -> tuple[str, Response]:
        route = routes.find(request.path, self.runtime.settings.role)
        if route is None:
            return "not-found", error(404, "not-found", "no such page")
        if request.method not in route.methods:
            response = error(405, "method-not-allowed", f"use {' or '.join(route.methods)}")
            response.headers.append((b"allow", ", ".join(route.methods).encode()))
            return route.name, response
        if route.handler is not None:
            return route.name, await route.handler(self.runtime, request)
        if route is routes.STATIC_ROUTE:
            found = await self.static.respond(request)
            if found is not None:
                return route.name, found
            return "not-found", error(404, "not-found", "no such page")
        return route.name, error(426, "upgrade-required", "this path speaks WebSocket")

    async def _http(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        started = time.perf_counter()
        request = self._request(scope, _headers(scope))
        try:
            route_name, response = await self._route(request)
        except Exception:
            log.exception("request failed", extra={"fields": {"request_id": request.request_id}})
            route_name, response = "error", error(500, "internal", "internal server error")
        headers = [
            (b"content-type", response.content_type.encode()),
            (b"content-length", str(len(response.body)).encode()),
            (b"x-request-id", request.request_id.encode()),
            *security_headers(https=request.https),
            *response.headers,
        ]
        # Account before sending: once the client has its answer it may hang up, and the
        # connection's tasks end with it.
        elapsed = time.perf_counter() - started
        metrics.http_requests.labels(route_name, request.method, str(response.status)).inc()
        metrics.http_duration.labels(route_name).observe(elapsed)
        event(
            log,
            logging.INFO,
            "request",
            method=request.method,
            path=request.path,
            status=response.status,
            ms=round(elapsed * 1000, 2),
            client=request.client,
            request_id=request.request_id,
        )
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        body = b"" if request.method == "HEAD" else response.body
        await send({"type": "http.response.body", "body": body})

    async def _websocket(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """An upgrade on a kept-alive connection: /signaling takes the socket from hypercorn
        and serves it on the same path as an upgrade on a fresh connection."""
        route = routes.find(scope["path"], self.runtime.settings.role)
        if route is None or route.path != routes.SIGNALING_PATH:
            await _deny(send, 404, b'{"error":"not-found","message":"no such endpoint"}\n')
            return
        service = self.runtime.signaling
        target = scope["raw_path"].decode("latin-1")
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        peer = (scope.get("client") or ("", 0))[0]
        handshake = Handshake.from_request(target, _headers(scope), peer, service)
        if handshake is None:  # hypercorn checked the handshake already; kept for the types
            await _deny(send, 400, b'{"error":"bad-handshake","message":"bad upgrade"}\n')
            return
        connection = taken_over()
        try:
            await serve_upgrade(service, connection.take_over(), handshake, b"")
        finally:
            connection.release()
