"""Liveness and readiness probes."""

from __future__ import annotations

import trio

from tallow.broker import BrokerUnavailable
from tallow.http.messages import Request, Response
from tallow.observability import metrics
from tallow.runtime import Runtime

BROKER_TIMEOUT = 2.0  # seconds a readiness check waits for the broker


async def health(runtime: Runtime, request: Request) -> Response:
    """Liveness: the process answers. Never touches the broker: a Redis outage restarts nothing."""
    return Response.json(
        {
            "status": "ok",
            "service": "tallow",
            "version": runtime.version,
            "node": runtime.settings.node,
            "role": runtime.settings.role,
            "uptime": round(runtime.uptime, 3),
        },
        headers=[(b"cache-control", b"no-store")],
    )


async def _broker_check(runtime: Runtime) -> dict[str, object]:
    try:
        with trio.fail_after(BROKER_TIMEOUT):
            rtt = await runtime.broker.ping()
    except (BrokerUnavailable, trio.TooSlowError) as error:
        metrics.broker_up.set(0)
        detail = str(error) or "timed out"
        # Every replica shares this Redis: failing readiness in an outage would take all of
        # them (and the web UI) out of the load balancer at once. So a replica that has
        # reached it before stays ready, says so, and tallow_broker_up alerts; signaling
        # answers `unavailable` until Redis is back. One that never reached it is
        # misconfigured (wrong password, untrusted certificate) and stays out.
        outage = runtime.broker.shared and runtime.broker_reached
        return {"ok": outage, "degraded": True, "broker": runtime.broker.name, "detail": detail}
    metrics.broker_up.set(1)
    runtime.broker_reached = True
    metrics.broker_rtt.observe(rtt)
    return {"ok": True, "broker": runtime.broker.name, "rtt_ms": round(rtt * 1000, 3)}


async def ready(runtime: Runtime, request: Request) -> Response:
    """Readiness: 200 only when every check passes; the body names each check either way."""
    selftest = runtime.selftest
    checks: dict[str, dict[str, object]] = {
        "pqc": {
            "ok": selftest.ok,
            "backend": selftest.backend,
            "algorithms": list(selftest.algorithms),
            "detail": selftest.detail,
        },
        "broker": await _broker_check(runtime),
        "draining": {"ok": not runtime.draining},
        "config": {"ok": True, "role": runtime.settings.role},
    }
    is_ready = all(check["ok"] for check in checks.values())
    metrics.ready.set(int(is_ready))
    body = {
        "status": "ready" if is_ready else "not-ready",
        "node": runtime.settings.node,
        "checks": checks,
    }
    return Response.json(body, 200 if is_ready else 503, headers=[(b"cache-control", b"no-store")])
