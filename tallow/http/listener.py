"""Accept TCP connections: /signaling upgrades go to the relay core, the rest to hypercorn.

The first request head decides: a WebSocket upgrade to /signaling is served on the raw socket
(tallow.http.upgrade); anything else goes to hypercorn's HTTP/1.1 machinery, which may later see
an upgrade on the kept-alive connection and hand the socket back (``taken_over``).

hypercorn's own ``worker_serve`` lets an exception in one connection's protocol handling escape
into the shared nursery, which stops the whole server. Here every connection runs inside its own
guard: a broken connection is logged and closed, and every other client carries on.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from hypercorn.config import Config, Sockets
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from hypercorn.utils import repr_socket_addr, wrap_app

from tallow.http.routes import SIGNALING_PATH
from tallow.http.upgrade import accept_upgrade, fresh_upgrade
from tallow.observability.logs import event
from tallow.signaling.service import SignalingService

log = logging.getLogger("tallow.http")

HEAD_LIMIT = 16384  # bytes of request head read before handing the connection on
RECEIVE_BYTES = 65536
# accept(2) errors that mean the machine is out of descriptors or memory for now: retry later.
ACCEPT_CAPACITY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
ACCEPT_RETRY_SECONDS = 0.1
# HTTP clients speak first: the kernel holds a new connection back until its first bytes come
# (or this many seconds pass; the header timeout then applies), so the request head is there
# when the connection is accepted: no wait and no cancel scope to read it.
DEFER_ACCEPT_SECONDS = 1
# Task names given, not derived: Trio would build a new name string for every task.
CONNECTION_TASK = "tallow.http.connection"
SESSION_TASK = "tallow.signaling.session"
TOO_LARGE_RESPONSE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n"
    b"connection: close\r\n\r\n"
)


class _Connection(TCPServer):
    """hypercorn's connection handler, ending its helper tasks once the socket is done.

    hypercorn's WebSocket ping loop sleeps a whole ping interval before it notices that its
    connection closed, keeping every finished connection (and graceful shutdown) waiting for
    up to TALLOW_HEARTBEAT_SECONDS. Once reading has ended, nothing in the group has work left.
    (Relies on hypercorn 0.18 internals; setup.cfg pins that version.)
    """

    async def _read_data(self) -> None:
        await super()._read_data()
        nursery = self._task_group._nursery
        assert nursery is not None  # the task group is entered for the connection's lifetime
        nursery.cancel_scope.cancel()


def bind(config: Config) -> Sockets:
    """Open the listening sockets (before any task starts, so a taken port is a plain error)."""
    sockets = config.create_sockets()
    for sock in sockets.insecure_sockets:
        _tune(sock)
        sock.listen(config.backlog)
    return sockets


class _Replay(trio.abc.HalfCloseableStream):
    """The socket stream hypercorn reads: first the bytes already read from it (the request
    head), and the socket can be taken back from hypercorn for a WebSocket upgrade."""

    def __init__(self, stream: trio.SocketStream, prefix: bytes) -> None:
        self._stream = stream
        self._prefix = prefix
        self.socket = stream.socket  # hypercorn reads the peer address from it
        self._reading: trio.CancelScope | None = None
        self._released: trio.Event | None = None  # set while taken: hypercorn waits for it

    def take_over(self) -> trio.socket.SocketType:
        """The raw socket, for the caller alone until release(): hypercorn's read is stopped
        (what it already buffered is lost: clients wait for the 101 before sending) and its
        writes are dropped."""
        self._released = trio.Event()
        if self._reading is not None:
            self._reading.cancel()
        return self._stream.socket

    def release(self) -> None:
        """The taken socket is done with: hypercorn sees the end of the connection."""
        assert self._released is not None
        self._released.set()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._prefix:
            data, self._prefix = self._prefix, b""
            await trio.lowlevel.checkpoint()
            return data
        if self._released is None:
            with trio.CancelScope() as self._reading:
                return await self._stream.receive_some(max_bytes)
        # Taken: hypercorn waits (deaf to its own timeouts) until the session is over.
        released = self._released
        assert released is not None  # cancelled above only by take_over()
        with trio.CancelScope(shield=True):
            await released.wait()
        return b""

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._released is None:
            await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        if self._released is None:
            await self._stream.send_eof()

    async def aclose(self) -> None:
        if self._released is None:
            await self._stream.aclose()


# The connection the current task serves through hypercorn (for an upgrade to take it over).
_current: contextvars.ContextVar[_Replay] = contextvars.ContextVar("tallow_http_connection")


def taken_over() -> _Replay:
    """From hypercorn's WebSocket handler: the connection the upgrade arrived on."""
    return _current.get()


async def read_head(sock: socket.socket, within: float) -> bytes | None:
    """The first request's head (and whatever followed it in the same reads), from a
    non-blocking socket.

    None when the client sent nothing useful ``within`` seconds: a slow-header client
    (slowloris) holds a connection for that long at most.
    """
    buffer = bytearray()
    # Most clients' whole head is there by the time the connection is accepted: then no
    # cancel scope and no wait (the scope and Trio's socket wrapper were a sixth of the cost
    # of opening a connection).
    with contextlib.suppress(BlockingIOError):
        buffer += sock.recv(RECEIVE_BYTES)
        if not buffer:
            return None
        if _head_read(buffer):
            return bytes(buffer)
    with trio.move_on_after(within):
        while not _head_read(buffer):
            await trio.lowlevel.wait_readable(sock)
            try:
                chunk = sock.recv(RECEIVE_BYTES)
            except BlockingIOError:
                continue
            if not chunk:
                return None
            buffer += chunk
        return bytes(buffer)
    return None


def _head_read(buffer: bytearray) -> bool:
    """The head is complete, or already longer than any head may be."""
    return b"\r\n\r\n" in buffer or len(buffer) > HEAD_LIMIT


def head_too_large(head: bytes) -> bool:
    end = head.find(b"\r\n\r\n")
    return end == -1 or end + 4 > HEAD_LIMIT


def wants_signaling(head: bytes) -> bool:
    """Whether the head is a WebSocket upgrade to /signaling (Handshake.parse checks the rest)."""
    lines = head.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    method, _, rest = lines[0].partition(b" ")
    target = rest.rpartition(b" ")[0]
    if method != b"GET" or target.split(b"?", 1)[0] != SIGNALING_PATH.encode():
        return False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"upgrade" and value.strip().lower() == b"websocket":
            return True
    return False


async def serve_http(
    asgi_app: Any,
    config: Config,
    sockets: Sockets,
    stop: trio.Event,
    *,
    signaling: SignalingService | None,
    header_timeout: float,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until ``stop`` is set, then stop accepting and give open connections
    ``config.graceful_timeout`` seconds to finish."""
    app = wrap_app(asgi_app, 0, "asgi")
    context = WorkerContext(None)
    listeners: list[socket.socket] = []
    urls = []
    for sock in sockets.insecure_sockets:
        sock.setblocking(False)
        listeners.append(sock)
        urls.append("http://" + repr_socket_addr(sock.family, sock.getsockname()))

    open_streams: set[trio.SocketStream] = set()  # hypercorn's, to close at the deadline

    async def guarded(sock: socket.socket, peer: str) -> None:
        """One accepted connection: its first request decides where it goes. A /signaling
        session gets a task of its own and this one ends, so an idle session's task is that
        session's one coroutine (no listener frames kept under it)."""
        handed_over = False
        try:
            head = await read_head(sock, header_timeout)
            if head is None:
                pass
            elif head_too_large(head):
                with contextlib.suppress(OSError):  # a fresh socket's buffer takes it whole
                    sock.send(TOO_LARGE_RESPONSE)
            elif signaling is not None and wants_signaling(head):
                accepted = await accept_upgrade(
                    signaling, sock, *fresh_upgrade(head, peer, signaling)
                )
                if accepted is not None:
                    session, resume = accepted
                    connections.start_soon(session.run, resume, name=SESSION_TASK)
                    handed_over = True
            else:
                stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
                await _serve_hypercorn(stream, head)
        except Exception:
            log.warning("connection failed", exc_info=True)
        finally:
            if not handed_over:
                sock.close()

    async def _serve_hypercorn(stream: trio.SocketStream, head: bytes) -> None:
        open_streams.add(stream)
        try:
            replay = _Replay(stream, head)
            _current.set(replay)
            # hypercorn annotates SSLStream but only uses the trio.abc.Stream methods.
            state = ConnectionState({})
            await _Connection(app, config, context, state, replay)  # type: ignore[arg-type]
        finally:
            open_streams.discard(stream)
            await trio.aclose_forcefully(stream)

    async with trio.open_nursery() as closer:
        async with trio.open_nursery() as connections:
            async with trio.open_nursery() as accepting:
                for listener in listeners:
                    accepting.start_soon(_accept_forever, listener, connections, guarded)
                task_status.started(urls)
                await stop.wait()
                # Connections the kernel completed before the signal are served, not reset.
                _accept_backlog(sockets, connections, guarded)
                accepting.cancel_scope.cancel()
            for listener in listeners:
                listener.close()
            open_connections = len(open_streams) + (len(signaling.sessions) if signaling else 0)
            event(log, logging.INFO, "stopped accepting", open_connections=open_connections)
            # Idle keep-alive connections close after hypercorn's keep-alive timeout (5 s);
            # closing them at once would race requests that have just arrived on them.
            deadline = trio.current_time() + config.graceful_timeout
            connections.cancel_scope.deadline = deadline
            closer.start_soon(_close_when_due, deadline, open_streams)
        closer.cancel_scope.cancel()


Handler = Callable[[socket.socket, str], Awaitable[None]]


def _tune(listener: socket.socket) -> None:
    """The options trio.SocketStream sets, for sockets served without one: no Nagle delay
    on small frames, and a 16 KiB bound on unsent bytes before the socket reads as full.
    Set on the listening socket: every accepted one inherits them (Linux), no system calls
    per connection. And connections are accepted once they have something to read."""
    with contextlib.suppress(OSError):  # not on Unix sockets
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT, 2**14)
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, DEFER_ACCEPT_SECONDS)


async def _accept_forever(listener: socket.socket, nursery: trio.Nursery, handler: Handler) -> None:
    """Accept on the (non-blocking) listening socket until cancelled: every connection waiting
    in the backlog, then a wait for the next (the backlog bounds the run between checkpoints)."""
    while True:
        try:
            _start(listener, nursery, handler)
        except BlockingIOError:
            await trio.lowlevel.wait_readable(listener)
        except OSError as error:
            if error.errno not in ACCEPT_CAPACITY_ERRNOS:
                raise
            event(log, logging.ERROR, "accept failed; retrying", error=str(error))
            await trio.sleep(ACCEPT_RETRY_SECONDS)


def _start(listener: socket.socket, nursery: trio.Nursery, handler: Handler) -> None:
    """Accept one connection and start its task (BlockingIOError: none is waiting)."""
    sock, address = listener.accept()
    sock.setblocking(False)
    nursery.start_soon(handler, sock, address[0], name=CONNECTION_TASK)


def _accept_backlog(sockets: Sockets, nursery: trio.Nursery, handler: Handler) -> None:
    for listener in sockets.insecure_sockets:
        with contextlib.suppress(OSError):  # BlockingIOError: nothing waiting
            while True:
                _start(listener, nursery, handler)


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
