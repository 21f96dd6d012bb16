"""SocketTransport's writes on a real socket pair: bytes owed with write_first go out ahead of
the next frame in the same system call, whole and once, even when the socket takes only part."""

from __future__ import annotations

import socket

from tallow.signaling.transport import SocketTransport


def drain(theirs: socket.socket) -> bytes:
    """Everything the other end has been sent so far."""
    theirs.setblocking(False)
    received = b""
    while True:
        try:
            chunk = theirs.recv(1 << 20)
        except BlockingIOError:
            return received
        if not chunk:
            return received
        received += chunk


async def test_owed_bytes_go_first_whole_and_once_through_partial_writes(readiness, pair) -> None:
    ours, theirs = pair
    transport = SocketTransport(ours, readiness, 1 << 20)
    owed = b"HTTP/1.1 101 \r\n" + b"x" * 3_000_000  # more than the socket takes at once
    frame = b"the first frame"
    transport.write_first(owed)
    received = b""
    results = []
    for _ in range(1000):  # bounded: each round drains what the socket took
        results.append(transport.write_nowait(frame))
        received += drain(theirs)
        if results[-1]:
            break
    assert results[0] == 0  # only part of the owed bytes fit: nothing of the frame counts yet
    assert results[-1] == len(frame)
    assert received + drain(theirs) == owed + frame
    assert transport.write_nowait(b"next") == 4 and drain(theirs) == b"next"
