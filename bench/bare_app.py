"""The smallest ASGI app that answers what bench/http_load.py asks Tallow for: hypercorn's own cost.

It answers /api/health with a JSON body of the same size as Tallow's and / with Tallow's built
index.html, with no routing table, security headers, request ids, logs or metrics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

INDEX = (Path(__file__).resolve().parent.parent / "tallow" / "static" / "index.html").read_bytes()
HEALTH = b'{"status":"ok","service":"tallow","version":"0.0.0","node":"bare","role":"all"}\n'


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["path"] == "/api/health":
        body, kind = HEALTH, b"application/json"
    elif scope["path"] == "/":
        body, kind = INDEX, b"text/html; charset=utf-8"
    else:
        body, kind = b"", b"text/plain"
    headers = [(b"content-type", kind), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200 if body else 404, "headers": headers})
    await send({"type": "http.response.body", "body": body})
