"""RESP2, the Redis wire format: commands encoded, replies split off a byte stream.

Only what the broker's own connections need (``redis_link``): commands are arrays of bulk
strings; replies are simple strings, errors, integers, bulk strings and arrays of them. A reply
may arrive split across reads, and one read may carry many: ``RespReader.feed`` returns every
complete one and keeps the rest for the next read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

CRLF = b"\r\n"


class ReplyError(Exception):
    """An error reply (``-ERR ...``, ``-MOVED ...``): Redis refused the command."""


class ProtocolError(Exception):
    """Bytes that are not RESP2: the connection is beyond repair."""


Reply: TypeAlias = "bytes | int | ReplyError | list[Reply] | None"


def encode(*command: str | bytes | int) -> bytes:
    """One command as a RESP array of bulk strings."""
    return b"*%d\r\n" % len(command) + bulk(command)


def bulk(arguments: Sequence[str | bytes | int]) -> bytes:
    """Arguments as RESP bulk strings, to follow an array's header (``encode`` writes both)."""
    parts: list[bytes] = []
    for argument in arguments:
        data = as_bytes(argument)
        parts += (b"$%d\r\n" % len(data), data, CRLF)  # a frame is not copied twice
    return b"".join(parts)


def as_bytes(argument: str | bytes | int) -> bytes:
    """A command argument as Redis receives it."""
    return argument if isinstance(argument, bytes) else str(argument).encode()


class RespReader:
    """Replies parsed from a stream of reads, in order.

    ``shortcut``: the bytes every reply of one frequent shape starts with, up to the length of
    its last item, a bulk string (a subscription's messages: ``*3``, the kind, the channel,
    ``$``). Such a reply comes back as that last item alone: only it is parsed (1.0 instead of
    3.8 us per message).
    """

    __slots__ = ("_buffer", "shortcut")

    def __init__(self) -> None:
        self._buffer = b""  # the start of a reply not yet complete
        self.shortcut = b""

    def feed(self, data: bytes | bytearray) -> list[Reply]:
        buffer = self._buffer + data if self._buffer else bytes(data)
        replies: list[Reply] = []
        position, size = 0, len(buffer)
        shortcut = self.shortcut
        while position < size:
            start = position
            if shortcut and buffer.startswith(shortcut, position):
                start += len(shortcut) - 1  # at the last item's "$": parsed as a bulk string
            parsed = _parse(buffer, start)
            if parsed is None:  # the buffer ends inside this reply
                break
            reply, position = parsed
            replies.append(reply)
        self._buffer = buffer[position:]
        return replies


def _parse(buffer: bytes, position: int) -> tuple[Reply, int] | None:
    """The reply starting at ``position`` and the position after it; None if incomplete."""
    end = buffer.find(CRLF, position)
    if end < 0:
        return None
    kind, line, after = buffer[position], buffer[position + 1 : end], end + 2
    if kind == 36:  # $: bulk string
        length = int(line)
        if length < 0:
            return None, after
        stop = after + length
        if len(buffer) < stop + 2:
            return None
        return buffer[after:stop], stop + 2
    if kind == 42:  # *: array
        count = int(line)
        if count < 0:
            return None, after
        items: list[Reply] = []
        for _ in range(count):
            parsed = _parse(buffer, after)
            if parsed is None:
                return None
            item, after = parsed
            items.append(item)
        return items, after
    if kind == 58:  # :: integer
        return int(line), after
    if kind == 43:  # +: simple string
        return line, after
    if kind == 45:  # -: error
        return ReplyError(line.decode(errors="replace")), after
    raise ProtocolError(f"unexpected RESP type byte {kind!r}")
