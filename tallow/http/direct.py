"""/signaling served directly on the Trio socket with wsproto: the fast path.

A WebSocket upgrade that opens a TCP connection skips the ASGI layers: the frames go from the
socket through wsproto to the Session and back, with no per-message channel hops in between.
That is most signaling traffic (browsers open a fresh connection for every WebSocket); an
upgrade arriving on a kept-alive HTTP connection still works, through hypercorn's ASGI path.
This path also sees pongs, so liveness is exact: a peer silent for three heartbeats is dropped.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Sequence
from urllib.parse import parse_qs, urlsplit

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError

from tallow.http.admission import TOO_MANY, over_connection_limit, refuse_upgrade
from tallow.http.clients import client_address
from tallow.http.messages import request_id as message_request_id
from tallow.observability.logs import event
from tallow.signaling import protocol as p
from tallow.signaling.service import SignalingService

log = logging.getLogger("tallow.http")

RECEIVE_BYTES = 65536
HARD_LIMIT_FACTOR = 4  # frames over 4x TALLOW_MAX_MESSAGE_BYTES are cut with 1009 at once
CLOSE_TIMEOUT = 5.0
WRITE_GRACE = 5.0  # seconds one frame may take to reach a slow client
GONE = (trio.BrokenResourceError, trio.ClosedResourceError, LocalProtocolError)


def text_frame(payload: bytes) -> bytes:
    """One unmasked, unfragmented server text frame (RFC 6455 5.2) around UTF-8 ``payload``.

    Written here rather than by wsproto, which wants a str and would decode and re-encode
    every relayed message; no extension is ever negotiated, so the frame format is fixed.
    """
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 1 << 16:
        return b"\x81\x7e" + size.to_bytes(2, "big") + payload
    return b"\x81\x7f" + size.to_bytes(8, "big") + payload


class DirectTransport:
    """The Session's transport over one wsproto connection on a Trio stream."""

    def __init__(self, stream: trio.SocketStream, ws: Connection, max_bytes: int) -> None:
        self.stream = stream
        self.ws = ws  # the open connection only: the handshake's state is not kept per socket
        self._fd = stream.socket.fileno()
        self.hard_limit = max_bytes * HARD_LIMIT_FACTOR
        self.last_heard = trio.current_time()
        self._send_lock = trio.StrictFIFOLock()
        self._parts: list[str | bytes] = []
        self._size = 0
        self._closed = False
        self._broken = False  # set once a write failed: nothing more is written
        self._tail = b""  # the unwritten rest of a frame that send_now started

    async def _write(self, data: bytes) -> None:
        """Write whole frames only: a frame cut off by cancellation would corrupt the stream.

        So a write runs shielded, for at most WRITE_GRACE seconds; a client that cannot take
        it in that time is beyond help and its socket is closed.
        """
        async with self._send_lock:
            # The rest of a frame send_now began always goes first: the stream stays whole.
            data, self._tail = self._tail + data, b""
            if self._broken or not data:
                return
            with trio.CancelScope(shield=True, deadline=trio.current_time() + WRITE_GRACE) as scope:
                try:
                    await self.stream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self._broken = True  # the client is gone; the reader will see it too
            if scope.cancelled_caught:
                self._broken = True
                await trio.aclose_forcefully(self.stream)

    def send_now(self, frame: bytes) -> bool | None:
        """Write ``frame`` at once when the socket can take it without waiting.

        Most relayed messages go out this way, straight from the sender's task: no hand-off to
        the writer task, no scheduling round. Returns None when nothing was written (queue the
        frame as usual), True when all of it was, False when only part was: the rest is kept
        here and goes out first with the next write, which the caller must arrange.
        """
        if self._closed or self._broken or self._tail or self._send_lock.locked():
            return None
        data = text_frame(frame)
        try:
            written = os.write(self._fd, data)
        except BlockingIOError:
            return None
        except OSError:
            self._broken = True  # gone; the reader sees it too
            return True
        self._tail = data[written:]
        return not self._tail

    async def send(self, frames: Sequence[bytes]) -> None:
        if not self._closed:
            await self._write(b"".join(map(text_frame, frames)))

    async def ping(self) -> None:
        if not self._closed:
            await self._write(self.ws.send(Ping()))

    async def close(self, code: int, reason: str) -> None:
        """The Session's close: a close frame (bounded in time), then the end of TCP."""
        await self._terminate(CloseConnection(code=code, reason=reason))

    async def _terminate(self, farewell: CloseConnection) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(LocalProtocolError):  # wsproto: already closing
            await self._write(self.ws.send(farewell))
        await trio.aclose_forcefully(self.stream)

    async def receive(self) -> str | bytes | None:
        """The next whole message; None once the peer has gone (or broke the protocol)."""
        while not self._closed:
            for item in self.ws.events():
                if isinstance(item, TextMessage | BytesMessage):
                    message = self._collect(item)
                    if message is not None:
                        return message
                    if self._size > self.hard_limit:  # never buffer a huge frame: cut it
                        await self._terminate(CloseConnection(code=p.CLOSE_TOO_BIG))
                        return None
                elif isinstance(item, Ping):
                    await self._write(self.ws.send(item.response()))
                elif isinstance(item, CloseConnection):
                    # The client's goodbye gets its echo; a protocol error wsproto found
                    # (1002, 1007) is answered with that code.
                    protocol_error = item.code in (1002, 1007)
                    await self._terminate(
                        CloseConnection(code=item.code) if protocol_error else item.response()
                    )
                    return None
            try:
                data = await self.stream.receive_some(RECEIVE_BYTES)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                self._closed = True
                return None
            self.last_heard = trio.current_time()
            self.ws.receive_data(data)
        return None

    def _collect(self, item: TextMessage | BytesMessage) -> str | bytes | None:
        """Join a fragmented message; None until it is whole (or when it outgrew the cap)."""
        self._parts.append(item.data)
        self._size += len(item.data)
        if self._size > self.hard_limit or not item.message_finished:
            return None
        parts, self._parts, self._size = self._parts, [], 0
        if isinstance(item, TextMessage):
            return "".join(parts)  # type: ignore[arg-type]
        return b"".join(parts)  # type: ignore[arg-type]


def _header(request: Request, name: bytes) -> str | None:
    values = [value for key, value in request.extra_headers if key.lower() == name]
    return b", ".join(values).decode("latin-1") if values else None


async def _reject(stream: trio.SocketStream, ws: WSConnection, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    with trio.move_on_after(CLOSE_TIMEOUT), contextlib.suppress(*GONE):
        await stream.send_all(
            ws.send(RejectConnection(status_code=status, headers=headers, has_body=True))
            + ws.send(RejectData(data=body))
        )
    await trio.aclose_forcefully(stream)


async def keep_alive(transport: DirectTransport, heartbeat: float) -> None:
    """Ping every heartbeat; a connection silent for three of them is closed (its Session ends)."""
    while True:
        await trio.sleep(heartbeat)
        if trio.current_time() - transport.last_heard > 3 * heartbeat:
            await trio.aclose_forcefully(transport.stream)
            return
        await transport.ping()


async def serve_direct(stream: trio.SocketStream, head: bytes, service: SignalingService) -> None:
    """Handle one TCP connection whose first request is a WebSocket upgrade to /signaling."""
    settings = service.settings
    ws = WSConnection(ConnectionType.SERVER)
    # wsproto's server handshake drops bytes that follow the request head (frames a client sent
    # before our 101), so they are held back here and fed in once the connection is open.
    request_head, separator, early_frames = head.partition(b"\r\n\r\n")
    ws.receive_data(request_head + separator)
    request = next(ws.events(), None)
    if not isinstance(request, Request):
        await trio.aclose_forcefully(stream)  # not a valid WebSocket handshake
        return
    peer = stream.socket.getpeername()[0]
    client, _ = client_address(peer, _header(request, b"x-forwarded-for"), settings.trusted_proxies)
    event(
        log,
        logging.INFO,
        "websocket",
        path=urlsplit(request.target).path,
        client=client,
        request_id=message_request_id(_header(request, b"x-request-id")),
    )
    refusal = refuse_upgrade(service, _header(request, b"origin"), request.host)
    if refusal is not None:
        await _reject(stream, ws, *refusal)
        return
    resume = parse_qs(urlsplit(request.target).query).get("resume", [None])[0]
    await stream.send_all(ws.send(AcceptConnection()))
    connection = ws.connection
    assert connection is not None  # open after the accept
    del ws, request, head, request_head  # a long-lived connection keeps none of its handshake
    connection.receive_data(early_frames)
    transport = DirectTransport(stream, connection, settings.max_message_bytes)
    if over_connection_limit(service, client):
        await transport.close(p.CLOSE_TRY_AGAIN, TOO_MANY)
        return
    async with trio.open_nursery() as nursery:
        nursery.start_soon(keep_alive, transport, settings.heartbeat_seconds)
        await service.serve(transport, client, resume)
        nursery.cancel_scope.cancel()
    await trio.aclose_forcefully(stream)
