"""The Trio supervisor: one nursery owns everything this process runs.

    serve()
      nursery
        broker.run             subscriptions and heartbeats of the broker
        signaling.reap_expired peer-left for peers whose resume grace ended
        signaling.run          one heartbeat task (pings every WebSocket, drops silent ones);
                               its nursery holds the outboxes' writers while they have a backlog
        _watch_signals         SIGTERM/SIGINT -> drain
        _run_http              the listener: /signaling sessions on raw sockets, the rest
                               (probes, metrics, ICE servers, UI) through hypercorn

Shutdown is cancellation: on SIGTERM the replica turns not-ready, stops accepting, closes its
WebSockets with 1001, gives in-flight HTTP up to TALLOW_DRAIN_SECONDS, then cancels the nursery.
"""

from __future__ import annotations

import logging
import signal

import trio
from hypercorn.config import Config, Sockets

from tallow import pqc
from tallow.broker import BrokerUnavailable, open_broker
from tallow.config import Settings
from tallow.http.app import TallowApp
from tallow.http.listener import bind, serve_http
from tallow.http.probes import BROKER_TIMEOUT
from tallow.observability import metrics
from tallow.observability.logs import event
from tallow.runtime import Runtime
from tallow.signaling.service import SignalingService

log = logging.getLogger("tallow.server")


def hypercorn_config(settings: Settings) -> Config:
    config = Config()
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    config.bind = [f"{host}:{settings.port}"]
    config.graceful_timeout = settings.drain_seconds
    # An HTTP connection that sends nothing for three heartbeats is closed. (WebSockets are
    # never hypercorn's: an upgrade it sees is handed to tallow.http.upgrade.)
    config.read_timeout = int(settings.heartbeat_seconds * 3)
    config.accesslog = None
    config.errorlog = logging.getLogger("tallow.hypercorn")
    return config


def build_runtime(settings: Settings) -> Runtime:
    """Check the PQC backend, then wire broker, signaling and self-test together."""
    pqc.ensure_available(settings.pqc_backend)
    broker = open_broker(settings)
    return Runtime(
        settings, broker, SignalingService(settings, broker), pqc.self_test(settings.pqc_backend)
    )


async def _first_broker_contact(runtime: Runtime) -> None:
    """One round trip at start: readiness tells an outage from a replica that never got in."""
    try:
        with trio.fail_after(BROKER_TIMEOUT):
            await runtime.broker.ping()
    except (BrokerUnavailable, trio.TooSlowError) as error:
        event(log, logging.WARNING, "broker not reachable at start", error=str(error) or "timeout")
    else:
        runtime.broker_reached = True


async def _watch_signals(stop: trio.Event, nursery: trio.Nursery) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            if stop.is_set():
                event(log, logging.WARNING, "second signal: stopping now", signal=signum)
                nursery.cancel_scope.cancel()
                return
            event(log, logging.INFO, "draining", signal=signal.Signals(signum).name)
            stop.set()


async def _run_http(
    runtime: Runtime,
    sockets: Sockets,
    stop: trio.Event,
    done: trio.Event,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    try:
        await serve_http(
            TallowApp(runtime),
            hypercorn_config(runtime.settings),
            sockets,
            stop,
            signaling=runtime.signaling if runtime.settings.serves_signaling else None,
            header_timeout=runtime.settings.header_timeout,
            task_status=task_status,
        )
    finally:
        done.set()


async def serve(
    settings: Settings, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run Tallow until SIGTERM/SIGINT (or cancellation); returns after a graceful drain."""
    runtime = build_runtime(settings)
    sockets = bind(hypercorn_config(settings))
    metrics.build_info.labels(runtime.version, settings.role, runtime.broker.name).set(1)
    metrics.up.set(1)
    if not runtime.selftest.ok:
        event(log, logging.ERROR, "PQC self-test failed", detail=runtime.selftest.detail)
    stop, http_done = trio.Event(), trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(runtime.broker.run)
        await _first_broker_contact(runtime)
        await nursery.start(runtime.signaling.reap_expired)
        await nursery.start(runtime.signaling.run)
        nursery.start_soon(_watch_signals, stop, nursery)
        binds = await nursery.start(_run_http, runtime, sockets, stop, http_done)
        event(
            log,
            logging.INFO,
            "listening",
            urls=binds,
            role=settings.role,
            broker=runtime.broker.name,
            redis=settings.redis_url.masked() if settings.redis_url else None,
            pqc=runtime.selftest.backend,
            pqc_ok=runtime.selftest.ok,
            version=runtime.version,
        )
        task_status.started(binds)
        await stop.wait()
        metrics.draining.set(1)
        metrics.ready.set(0)
        runtime.signaling.drain()
        with trio.move_on_after(settings.drain_seconds + 1):
            await http_done.wait()
        nursery.cancel_scope.cancel()
    event(log, logging.INFO, "stopped", uptime=round(runtime.uptime, 3))
