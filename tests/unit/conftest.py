"""Fixtures of the in-process tests: a running readiness set and a connected socket pair."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator

import pytest
import trio

from tallow.signaling.readiness import ReadReadiness


@pytest.fixture
async def readiness() -> AsyncIterator[ReadReadiness]:
    readiness = ReadReadiness()
    async with trio.open_nursery() as nursery:
        await nursery.start(readiness.run)
        yield readiness
        nursery.cancel_scope.cancel()


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    yield ours, theirs
    ours.close()
    theirs.close()
