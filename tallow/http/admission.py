"""Who may open /signaling: the Origin rule, draining, and the per-address limit."""

from __future__ import annotations

from urllib.parse import urlsplit

from tallow.config import Settings
from tallow.observability import metrics
from tallow.signaling.service import SignalingService

FORBIDDEN = b'{"error":"origin-not-allowed","message":"origin not allowed"}\n'
DRAINING = b'{"error":"draining","message":"server restarting; retry"}\n'
TOO_MANY = "too many connections from your address"


def origin_allowed(origin: str | None, host: str | None, settings: Settings) -> bool:
    """PROTOCOL.md: no Origin (not a browser) is fine; a browser page must be an allowed origin."""
    if origin is None:
        return True
    origin = origin.rstrip("/").lower()
    if settings.allowed_origins:
        return "*" in settings.allowed_origins or origin in settings.allowed_origins
    return host is not None and urlsplit(origin).netloc == host.lower()


def refuse_upgrade(
    service: SignalingService, origin: str | None, host: str | None
) -> tuple[int, bytes] | None:
    """(HTTP status, JSON body) to answer instead of upgrading, or None to upgrade."""
    if not origin_allowed(origin, host, service.settings):
        metrics.connections_rejected.labels("origin").inc()
        return 403, FORBIDDEN
    if service.draining:
        metrics.connections_rejected.labels("draining").inc()
        return 503, DRAINING
    return None


def over_connection_limit(service: SignalingService, client: str) -> bool:
    """After the upgrade: True when this address already holds its share (close with 1013)."""
    refusal = service.refusal(client)
    if refusal is not None:
        metrics.connections_rejected.labels(refusal).inc()
    return refusal is not None
