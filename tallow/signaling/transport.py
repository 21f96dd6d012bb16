"""One client's WebSocket on a non-blocking socket: messages in, bytes out, nothing in between.

The session's own task reads (``trio.lowlevel.wait_readable`` when the socket is empty, then one
``read`` whose frames are all decoded in one pass); any task writes, without waiting, through the
session's ``Outbox``. No stream object, lock or cancel scope per write: the socket is the buffer,
and the outbox keeps whatever it cannot take yet.
"""

from __future__ import annotations

import contextlib
import os
from typing import Protocol

import trio

from tallow.signaling.codec import (
    CLOSE,
    PING,
    Control,
    Decoder,
    FrameError,
    Message,
    close_frame,
    pong_frame,
)
from tallow.signaling.outbox import CONTROL, Outbox, Wire

RECEIVE_BYTES = 65536


class Transport(Wire, Protocol):
    """A WebSocket as the session sees it (a real socket, or a fake one in tests)."""

    last_heard: float  # trio.current_time() of the last bytes the client sent
    farewell: bytes | None  # the close frame owed to a client that ended the connection

    async def receive(self, outbox: Outbox) -> str | bytes | None:
        """The next text (str) or binary (bytes) message; None once the connection ended.
        Pings are answered through ``outbox``, so a pong never cuts into another frame."""
        ...

    def interrupt(self) -> None:
        """Make receive() return None now (if waiting) or next time: the session closes."""
        ...


class SocketTransport:
    __slots__ = (
        "_decoder",
        "_early",
        "_interrupted",
        "_pending",
        "_socket",
        "farewell",
        "last_heard",
    )

    def __init__(self, sock: trio.socket.SocketType, hard_limit: int, early: bytes = b"") -> None:
        self._socket = sock
        self._decoder = Decoder(hard_limit)
        self._pending: list[Message] = []  # decoded, not yet handed out; in reverse order
        self._early = early  # frames that came in with the request head
        self.last_heard = trio.current_time()
        self.farewell: bytes | None = None
        self._interrupted = False

    async def receive(self, outbox: Outbox) -> str | bytes | None:
        while True:
            while self._pending:
                message = self._pending.pop()
                if not isinstance(message, Control):
                    return message
                if message.opcode == PING:
                    outbox.put(pong_frame(message.payload), CONTROL, bounded=False)
                elif message.opcode == CLOSE:
                    self.farewell = close_frame(message.code)  # the echo RFC 6455 asks for
                    return None
            if self._interrupted:
                return None
            # Wait, then one read, decoded whole. Waiting first (as the socket is most likely
            # drained) saves a read that finds nothing, one system call per message, and makes
            # every read a checkpoint. No local keeps the bytes while the next read waits.
            if self._early:
                data, self._early = self._early, b""
            else:
                try:
                    await trio.lowlevel.wait_readable(self._socket)
                except trio.ClosedResourceError:  # closed here, or interrupted
                    return None
                try:
                    data = os.read(self._socket.fileno(), RECEIVE_BYTES)
                except BlockingIOError:  # woken with nothing to read after all
                    continue
                except OSError:
                    return None
            if not data:
                return None
            self.last_heard = trio.current_time()
            try:
                self._pending = self._decoder.feed(data)
            except FrameError as error:
                self.farewell = close_frame(error.code, error.reason)
                return None
            del data
            self._pending.reverse()

    def interrupt(self) -> None:
        """End a receive() in progress (or the next one): the session is closing."""
        self._interrupted = True
        if self._socket.fileno() != -1:
            trio.lowlevel.notify_closing(self._socket)

    # --- the outbox's Wire ----------------------------------------------------------------------

    def write_nowait(self, data: bytes) -> int:
        try:
            return os.write(self._socket.fileno(), data)
        except BlockingIOError:
            return 0
        except OSError:  # gone, or closed here (fileno -1): the reader sees the end
            return len(data)

    async def wait_writable(self) -> None:
        # Closed: the next write reports it as written, and the reader sees the end.
        with contextlib.suppress(trio.ClosedResourceError):
            await trio.lowlevel.wait_writable(self._socket)

    def abort(self) -> None:
        self._socket.close()
