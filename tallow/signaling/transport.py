"""One client's WebSocket on a non-blocking socket: messages in, bytes out, nothing in between.

The session's own task reads (it awaits the socket's readiness itself when the socket is empty,
then one ``read`` whose frames are all decoded in one pass); any task writes, without
waiting, through the session's ``Outbox``. No stream object, lock or cancel scope per write: the
socket is the buffer, and the outbox keeps whatever it cannot take yet.
"""

from __future__ import annotations

import contextlib
import enum
import socket
from collections.abc import Awaitable, Callable
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
from tallow.signaling.readiness import ReadReadiness

RECEIVE_BYTES = 65536

# What every transport holds when nothing decoded waits: one shared list, never written to, so
# an idle connection keeps no empty list of its own (56 bytes).
_NOTHING: list[Message] = []


class Need(enum.Enum):
    """What ``receive_nowait`` says when it has no message yet."""

    READ = "read"  # await readable(), then ask again


class Transport(Wire, Protocol):
    """A WebSocket as the session sees it (a real socket, or a fake one in tests)."""

    silent_beats: int  # heartbeats since the client last sent anything (reads reset it)
    farewell: bytes | None  # the close frame owed to a client that ended the connection

    def receive_nowait(self, outbox: Outbox) -> str | bytes | Need | None:
        """The next text (str) or binary (bytes) message; ``Need.READ`` when there is none
        until the client sends more; None once the connection ended. Pings are answered
        through ``outbox``, so a pong never cuts into another frame."""
        ...

    def readable(self, inline: Callable[[], bool]) -> Awaitable[None]:
        """The wait for more from the client, to be awaited before asking again (it also ends
        when the transport is interrupted or closed: the next receive_nowait says so).
        Not a coroutine of the transport's: an idle connection's task is one frame shorter.

        While it waits, ``inline`` may be called from another task when bytes arrive: it takes
        them (receive_nowait until ``Need.READ``) without waiting and says True to wait on, or
        False to end the wait."""
        ...

    def proceed(self) -> None:
        """What the session waited on besides the client has come (from another task): run the
        waiting session's ``inline`` as bytes arriving would, reading only what came; end the
        wait if it says False."""
        ...

    def interrupt(self) -> None:
        """Make receive_nowait() return None from now on, and end a wait in progress."""
        ...


class SocketTransport:
    __slots__ = (
        "_decoder",
        "_early",
        "_first",
        "_full",
        "_inline",
        "_interrupted",
        "_pending",
        "_readiness",
        "_socket",
        "_waited",
        "farewell",
        "silent_beats",
    )

    def __init__(
        self,
        sock: socket.socket,
        readiness: ReadReadiness,
        hard_limit: int,
        early: bytes = b"",
    ) -> None:
        # A plain non-blocking socket, the transport's alone: its C methods read and write
        # without Trio's wrapper, and nothing else can close the number under us.
        self._socket = sock
        self._readiness = readiness
        readiness.add(self._socket.fileno(), self)
        self._inline: Callable[[], bool] | None = None  # the waiting session's, while it waits
        self._decoder = Decoder(hard_limit)
        self._pending = _NOTHING  # decoded, not yet handed out; in reverse order
        self._early = early  # frames that came in with the request head
        self._first = b""  # bytes owed before the next write (see write_first)
        self._waited = False  # readable() was awaited since the last read
        self._full = False  # the last read filled the buffer: read again, edge or not
        self.silent_beats = 0
        self.farewell: bytes | None = None
        self._interrupted = False

    def receive_nowait(self, outbox: Outbox) -> str | bytes | Need | None:
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
            self._pending = _NOTHING
            if self._interrupted:
                return None
            # Wait, then one read, decoded whole. Waiting first (as the socket is most likely
            # drained) saves a read that finds nothing, one system call per message, and makes
            # every read a checkpoint. No local keeps the bytes while the next read waits.
            if self._early:
                data, self._early = self._early, b""
            elif not self._waited:
                return Need.READ
            else:
                self._waited = False
                try:
                    data = self._socket.recv(RECEIVE_BYTES)
                except BlockingIOError:  # woken with nothing to read after all
                    return Need.READ
                except OSError:  # gone, or closed (fileno -1)
                    return None
                # Readiness is edge-triggered: a full read may have left bytes behind, and no
                # new edge would come for them. The next wait returns at once (still a
                # checkpoint, so a flooding client cannot starve the others).
                self._full = len(data) == RECEIVE_BYTES
            if not data:
                return None
            self.silent_beats = 0  # a counter, not a clock: no clock read per message
            try:
                decoded = self._decoder.feed(data)
            except FrameError as error:
                self.farewell = close_frame(error.code, error.reason)
                return None
            del data
            if decoded:
                decoded.reverse()
                self._pending = decoded

    def readable(self, inline: Callable[[], bool]) -> Awaitable[None]:
        self._waited = True  # the caller awaits this before it asks again: read then
        if self._full:
            self._full = False
            return trio.lowlevel.checkpoint()  # noqa: ASYNC105 (the caller awaits it)
        self._inline = inline
        return self._readiness.wait(self._socket.fileno())

    def on_readable(self) -> bool:
        """The readiness set's ``Reader``: the session takes the bytes inline. After a full
        read its own task goes on (its wait returns at once): it reads the rest."""
        self._waited = True
        return self._go_on()

    def proceed(self) -> None:
        if not self._go_on():
            fd = self._socket.fileno()
            if fd != -1:
                self._readiness.wake(fd)

    def _go_on(self) -> bool:
        """The waiting session's ``inline``; True if its task waits on."""
        inline = self._inline
        if inline is None:
            return False
        if inline() and not self._full:
            return True
        self._inline = None
        return False

    def interrupt(self) -> None:
        """End a wait in progress (or the next receive): the session is closing."""
        self._interrupted = True
        fd = self._socket.fileno()
        if fd != -1:
            self._readiness.wake(fd)

    # --- the outbox's Wire ----------------------------------------------------------------------

    def write_first(self, data: bytes) -> None:
        """``data`` goes out ahead of the next write, in the same system call: the 101 leaves
        with the welcome (one write, one segment, where there were two)."""
        self._first += data

    def write_nowait(self, data: bytes) -> int:
        first = self._first
        try:
            written = self._socket.send(first + data if first else data)
        except BlockingIOError:
            return 0
        except OSError:  # gone, or closed here (fileno -1): the reader sees the end
            return len(data)
        if first:  # the owed bytes count for nothing of data's until they are all out
            self._first = first[written:]
            written = max(0, written - len(first))
        return written

    async def wait_writable(self) -> None:
        # Closed: the next write reports it as written, and the reader sees the end.
        with contextlib.suppress(trio.ClosedResourceError):
            await trio.lowlevel.wait_writable(self._socket)

    def abort(self) -> None:
        self._inline = None  # the session's method: no cycle left to collect
        fd = self._socket.fileno()
        if fd != -1:  # once: the number may be another socket's later
            self._readiness.forget(fd)
            trio.lowlevel.notify_closing(self._socket)  # ends a writer's wait_writable
            self._socket.close()
