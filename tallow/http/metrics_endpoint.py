"""/api/metrics: Prometheus text, behind an optional bearer token."""

from __future__ import annotations

import hmac

from prometheus_client import CONTENT_TYPE_LATEST

from tallow.http.messages import Request, Response, error
from tallow.observability import metrics
from tallow.runtime import Runtime


async def metrics_page(runtime: Runtime, request: Request) -> Response:
    token = runtime.settings.metrics_token
    if token is not None:
        given = (request.header("authorization") or "").encode()
        if not hmac.compare_digest(given, f"Bearer {token}".encode()):
            response = error(401, "unauthorized", "send Authorization: Bearer <METRICS_TOKEN>")
            response.headers.append((b"www-authenticate", b'Bearer realm="tallow-metrics"'))
            return response
    return Response(
        200, metrics.exposition(), CONTENT_TYPE_LATEST, [(b"cache-control", b"no-store")]
    )
