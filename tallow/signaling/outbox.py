"""One session's outgoing frames: their order, their bound, and the writer that drains them.

Everything a client is sent goes through its ``Outbox``: replies, relayed messages, pings and the
final close frame. A frame is written straight into the socket from whichever task produced it
when nothing is waiting before it; otherwise it joins one queue, in order, and a writer task
exists only while that queue (or the unwritten rest of a frame) is not empty. The queue has one
bound, ``limit`` entries: a client that falls that far behind is cut off (its session closes
with 1013 and resumes). Frames held while a join is in flight are queued and count too.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import Protocol

import trio

from tallow.signaling.codec import PING_FRAME, text_frame

REPLY, RELAYED, CONTROL = 0, 1, 2  # what a queued entry is: CONTROL entries are whole frames

WRITE_BATCH = 64  # most queued frames joined into one write
WRITE_GRACE = 5.0  # seconds a client may keep a started frame waiting before it is cut off


class Wire(Protocol):
    """The byte stream under an outbox: a non-blocking socket as far as the outbox is concerned."""

    def write_nowait(self, data: bytes) -> int:
        """Write what the socket takes now; the number of bytes written (0: nothing fits).
        A broken connection counts as written: the reader sees it end."""
        ...

    async def wait_writable(self) -> None: ...

    def abort(self) -> None:
        """Close the socket at once (the reader then sees the connection end)."""
        ...


Spawn = Callable[[Callable[[], Awaitable[None]]], None]


class Outbox:
    __slots__ = ("_hold_mark", "_queue", "_rest", "_spawn", "_wire", "_writer", "limit")

    def __init__(self, wire: Wire, limit: int, spawn: Spawn) -> None:
        self._wire = wire
        # (JSON payload or control frame, kind); a list, not a deque: idle, it is 56 bytes, not 600
        self._queue: list[tuple[bytes, int]] = []
        self._rest = b""  # the unwritten end of a frame already started: always goes first
        self._hold_mark: int | None = None  # queue length when hold() began
        self._spawn: Spawn | None = spawn  # starts a writer task; None once finished
        # The running writer's scope and end, only while there is one (an idle outbox has none).
        self._writer: tuple[trio.CancelScope, trio.Event] | None = None
        self.limit = limit

    # --- putting frames in ----------------------------------------------------------------------

    def put(self, payload: bytes, kind: int = REPLY, *, bounded: bool = True) -> bool:
        """Send ``payload`` (a text message, or a whole control frame) after everything before
        it; False when the client is ``limit`` frames behind, or the outbox is finished (the
        frame is not taken)."""
        if self._spawn is None:
            return False
        if self._idle():
            data = payload if kind == CONTROL else text_frame(payload)
            written = self._wire.write_nowait(data)
            if written == len(data):
                return True
            if written:  # the frame is started: its rest goes out before anything else
                self._rest = data[written:]
                self._start_writer()
                return True
        elif bounded and len(self._queue) >= self.limit:
            return False
        self._queue.append((payload, kind))
        self._start_writer()
        return True

    def ping(self) -> None:
        """A WebSocket ping, only when nothing else is waiting (then traffic shows liveness)."""
        if self._spawn is not None and self._idle():
            self._write_now(PING_FRAME)
            self._start_writer()

    def hold(self) -> None:
        """Queue everything from now on, until release(): a join's reply must come first."""
        self._hold_mark = len(self._queue)

    def release(self, first: bytes | None) -> None:
        """Put ``first`` before the frames held since hold(), and let them all go."""
        if self._hold_mark is not None and first is not None:
            self._queue.insert(self._hold_mark, (first, REPLY))
        self._hold_mark = None
        self._start_writer()

    @contextlib.contextmanager
    def restoring(self) -> Iterator[None]:
        """A resumed peer's backlog (bounded by the broker) comes in whole; the bound counts
        from there on."""
        limit, self.limit = self.limit, sys.maxsize
        try:
            yield
        finally:
            # The same int when nothing was restored: a sum would be a new one (32 bytes).
            self.limit = limit + len(self._queue) if self._queue else limit

    def unsent(self) -> list[bytes]:
        """Relayed frames never started on the wire (they wait for the peer's resume)."""
        return [payload for payload, kind in self._queue if kind == RELAYED]

    # --- writing --------------------------------------------------------------------------------

    def _start_writer(self) -> None:
        if self._writer is None and self._spawn is not None and (self._rest or self._ready()):
            self._writer = (trio.CancelScope(), trio.Event())
            self._spawn(self._write)

    def _idle(self) -> bool:
        return not self._queue and not self._rest and self._hold_mark is None

    def _ready(self) -> bool:
        return bool(self._queue) and self._hold_mark is None

    def _write_now(self, data: bytes) -> None:
        written = self._wire.write_nowait(data)
        self._rest = data[written:] if written < len(data) else b""

    async def _write(self) -> None:
        """The writer: drain the queue in batches while the socket takes them, then end."""
        assert self._writer is not None
        scope, done = self._writer
        try:
            with scope:
                while self._rest or self._ready():
                    if self._rest:
                        self._write_now(self._rest)
                        written = not self._rest
                    else:
                        written = self._write_batch()
                    if not written and not await self._wait_writable():
                        return
        finally:
            self._writer = None
            done.set()

    def _write_batch(self) -> bool:
        """Write up to WRITE_BATCH queued frames in one call; True when all of them went."""
        count = min(len(self._queue), WRITE_BATCH)
        entries = self._queue[:count]
        del self._queue[:count]
        frames = [payload if kind == CONTROL else text_frame(payload) for payload, kind in entries]
        data = b"".join(frames)
        written = self._wire.write_nowait(data)
        if written == len(data):
            return True
        # Frames the socket did not start on go back, still unsent (they survive a resume).
        started, offset = 0, 0
        while started < count and offset + len(frames[started]) <= written:
            offset += len(frames[started])
            started += 1
        if offset < written:  # one frame is cut: its rest goes first, it counts as sent
            self._rest = data[written : offset + len(frames[started])]
            started += 1
        self._queue[:0] = entries[started:]
        return False

    async def _wait_writable(self) -> bool:
        """False when the client took nothing for WRITE_GRACE: it is beyond help, cut off."""
        with trio.move_on_after(WRITE_GRACE) as scope:
            await self._wire.wait_writable()
        if scope.cancelled_caught:
            self._wire.abort()
            self._rest = b""
            return False
        return True

    async def finish(self, last: bytes) -> None:
        """The end: the rest of a started frame, then ``last`` (a close frame); nothing after.
        Queued frames are dropped: the session handed the relayed ones to the broker."""
        self._spawn = None
        self._queue.clear()
        self._hold_mark = None
        if self._writer is not None:  # stop it; only one task may wait on the socket
            scope, done = self._writer
            scope.cancel()
            await done.wait()
        data, self._rest = self._rest + last, b""
        await write_all(self._wire, data)


async def write_all(wire: Wire, data: bytes) -> None:
    """Write all of ``data``, waiting for the socket as needed (callers bound the time)."""
    while data:
        data = data[wire.write_nowait(data) :]
        if data:
            await wire.wait_writable()
