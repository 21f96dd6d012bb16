"""Accept TCP connections and hand each to hypercorn's HTTP/1.1 + WebSocket protocol machinery.

hypercorn's own ``worker_serve`` lets an exception in one connection's protocol handling escape
into the shared nursery, which stops the whole server (a pipelined WebSocket frame sent before
the 101 response did exactly that). Here every connection runs inside its own guard: a broken
connection is logged and closed, and every other client carries on.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config, Sockets
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from hypercorn.utils import repr_socket_addr, wrap_app

from tallow.observability.logs import event

log = logging.getLogger("tallow.http")


class _Connection(TCPServer):
    """hypercorn's connection handler, ending its helper tasks once the socket is done.

    hypercorn's WebSocket ping loop sleeps a whole ping interval before it notices that its
    connection closed, keeping every finished connection (and graceful shutdown) waiting for
    up to TALLOW_HEARTBEAT_SECONDS. Once reading has ended, nothing in the group has work left.
    (Relies on hypercorn 0.18 internals; setup.cfg pins that version.)
    """

    async def _read_data(self) -> None:
        await super()._read_data()
        self._task_group._nursery.cancel_scope.cancel()


def bind(config: Config) -> Sockets:
    """Open the listening sockets (before any task starts, so a taken port is a plain error)."""
    sockets = config.create_sockets()
    for sock in sockets.insecure_sockets:
        sock.listen(config.backlog)
    return sockets


async def serve_http(
    asgi_app: Any,
    config: Config,
    sockets: Sockets,
    stop: trio.Event,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until ``stop`` is set, then stop accepting and give open connections
    ``config.graceful_timeout`` seconds to finish."""
    app = wrap_app(asgi_app, 0, "asgi")
    context = WorkerContext(None)
    listeners, urls = [], []
    for sock in sockets.insecure_sockets:
        listeners.append(trio.SocketListener(trio.socket.from_stdlib_socket(sock)))
        urls.append("http://" + repr_socket_addr(sock.family, sock.getsockname()))

    open_streams: set[trio.SocketStream] = set()

    async def guarded(stream: trio.SocketStream) -> None:
        open_streams.add(stream)
        try:
            await _Connection(app, config, context, ConnectionState({}), stream)
        except Exception:
            log.warning("connection failed", exc_info=True)
            await trio.aclose_forcefully(stream)
        finally:
            open_streams.discard(stream)

    async with trio.open_nursery() as closer:
        async with trio.open_nursery() as connections:
            async with trio.open_nursery() as accepting:
                await accepting.start(
                    partial(trio.serve_listeners, handler_nursery=connections), guarded, listeners
                )
                task_status.started(urls)
                await stop.wait()
                accepting.cancel_scope.cancel()  # closes the listening sockets
            event(log, logging.INFO, "stopped accepting", open_connections=len(open_streams))
            await context.terminated.set()  # idle keep-alive connections close now
            deadline = trio.current_time() + config.graceful_timeout
            connections.cancel_scope.deadline = deadline
            closer.start_soon(_close_when_due, deadline, open_streams)
        closer.cancel_scope.cancel()


async def _close_when_due(deadline: float, streams: set[trio.SocketStream]) -> None:
    """At the drain deadline (or when cancelled by a second signal) close every socket left.

    hypercorn shields its socket writes from cancellation, so a client that stopped reading
    would hold shutdown forever; closing the socket is what wakes such a write.
    """
    try:
        await trio.sleep_until(deadline)
    finally:
        with trio.CancelScope(shield=True):
            for stream in list(streams):
                await trio.aclose_forcefully(stream)
