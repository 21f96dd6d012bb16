"""A Redis connection of the broker's own: raw RESP on a socket, no client machinery.

The two hot paths of the Redis broker use one each: the subscriber (``redis_pubsub``) and the
script pipeline (``redis_batch``). coredis (``redis_connect``) still finds the node to connect
to and runs everything else. A link logs in (AUTH, SELECT) in the same write as its first
commands would go, and reads replies in batches: many per read.

Over plain TCP a link drives its non-blocking socket itself (``PlainStream``): a read waits for
readiness first, then reads once, so each read costs one task switch and one ``recv``, where
Trio's ``SocketStream`` tries a read that finds nothing (the replies of a pipeline just sent
have not come yet), waits, reads, and yields once more after it; a write that the socket takes
whole does not yield at all (the caller waits for the replies next). With TLS it uses Trio's
``SSLStream``.
"""

from __future__ import annotations

import socket
import ssl

import attrs
import trio

from tallow.broker.base import BrokerUnavailable
from tallow.broker.resp import Reply, ReplyError, RespReader, encode

_Socket = socket.socket | trio.socket.SocketType
READ_SIZE = 256 * 1024  # bytes per read: at 100 pairs a read carries tens of replies


@attrs.frozen
class Endpoint:
    """One Redis node and how to log in to it."""

    host: str
    port: int
    tls: ssl.SSLContext | None = None
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    db: int = 0


class PlainStream(trio.abc.Stream):
    """A connected TCP socket, read wait-first (module docstring)."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self._socket = sock

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[self._socket.send(view) :]
            except BlockingIOError:
                await trio.lowlevel.wait_writable(self._socket)

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.wait_writable(self._socket)

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        while True:
            await trio.lowlevel.wait_readable(self._socket)
            try:
                return self._socket.recv(max_bytes or READ_SIZE)
            except BlockingIOError:
                continue

    async def aclose(self) -> None:
        _close_now(self._socket)
        await trio.lowlevel.checkpoint()


class Link:
    """Commands written as bytes, replies read back in order."""

    def __init__(self, stream: trio.abc.Stream, sock: _Socket | None = None) -> None:
        """``sock``: the TCP connection under ``stream``, for ``abort`` (the unit tests' memory
        streams have none)."""
        self.stream = stream
        self._socket = sock
        self.reader = RespReader()
        self._read: list[Reply] = []  # parsed, not yet taken

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def replies(self, count: int) -> list[Reply]:
        """The next ``count`` replies."""
        while len(self._read) < count:
            await self.read_more()
        taken, self._read = self._read[:count], self._read[count:]
        return taken

    async def read_more(self) -> None:
        data = await self.stream.receive_some(READ_SIZE)
        if not data:
            raise BrokerUnavailable("connection closed by Redis")
        self._read += self.reader.feed(data)

    def take(self) -> list[Reply]:
        """Every reply read so far."""
        taken, self._read = self._read, []
        return taken

    async def log_in(self, endpoint: Endpoint, *commands: bytes) -> list[Reply]:
        """AUTH and SELECT as ``endpoint`` needs, then ``commands``, in one write: their
        replies; BrokerUnavailable if Redis refused any."""
        login = []
        if endpoint.password is not None:
            user = (endpoint.username,) if endpoint.username else ()
            login.append(encode("AUTH", *user, endpoint.password))
        if endpoint.db:
            login.append(encode("SELECT", endpoint.db))
        await self.send(b"".join([*login, *commands]))
        replies = await self.replies(len(login) + len(commands))
        for reply in replies:
            if isinstance(reply, ReplyError):
                raise BrokerUnavailable(f"refused by Redis: {reply}")
        return replies[len(login) :]

    def abort(self) -> None:
        """Close the connection now, from any task: a read or write waiting on it fails at
        once (``trio.ClosedResourceError``, or ``BrokenResourceError`` through TLS)."""
        if self._socket is not None:
            _close_now(self._socket)

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)


async def connect(endpoint: Endpoint) -> Link:
    """A TCP (or TLS) connection to ``endpoint``, not yet logged in; callers bound the time."""
    tcp = await trio.open_tcp_stream(endpoint.host, endpoint.port)
    if endpoint.tls is None:
        # Its own socket now (TCP_NODELAY set, as Trio sets it on every TCP stream).
        plain = socket.socket(fileno=tcp.socket.detach())
        return Link(PlainStream(plain), plain)
    stream = trio.SSLStream(tcp, endpoint.tls, server_hostname=endpoint.host)
    try:
        await stream.do_handshake()
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return Link(stream, tcp.socket)


def _close_now(sock: _Socket) -> None:
    trio.lowlevel.notify_closing(sock)  # a task waiting on it hears at once
    sock.close()
