"""/api/ice-servers: the STUN and TURN servers a browser should use, in RTCIceServer shape.

With TURN_SECRET the credentials follow the TURN REST API that coturn's ``use-auth-secret``
implements: the user name is ``<expiry unix time>:<random id>`` and the password is
base64(HMAC-SHA1(secret, user name)), so coturn can check them without any shared state.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from typing import Any

from tallow.config import Settings
from tallow.http.messages import Request, Response
from tallow.runtime import Runtime


def turn_rest_credentials(secret: str, ttl: int, now: float | None = None) -> tuple[str, str]:
    expiry = int(now if now is not None else time.time()) + ttl
    username = f"{expiry}:{secrets.token_hex(8)}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def ice_servers(settings: Settings) -> dict[str, Any]:
    servers: list[dict[str, Any]] = []
    if settings.stun_urls:
        servers.append({"urls": list(settings.stun_urls)})
    if settings.turn_urls:
        if settings.turn_secret:
            username, credential = turn_rest_credentials(settings.turn_secret, settings.turn_ttl)
        else:
            username, credential = settings.turn_username or "", settings.turn_credential or ""
        servers.append(
            {"urls": list(settings.turn_urls), "username": username, "credential": credential}
        )
    return {"iceServers": servers, "ttl": settings.turn_ttl}


async def ice_servers_page(runtime: Runtime, request: Request) -> Response:
    return Response.json(ice_servers(runtime.settings), headers=[(b"cache-control", b"no-store")])
