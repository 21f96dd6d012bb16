"""RFC 6455 on the server side, built for relaying text messages.

A ``Decoder`` takes whatever bytes a read returned and gives back every whole message in them in
one pass: text as ``str`` (UTF-8 checked), binary as ``bytes``, control frames as ``Control``.
Fragments are joined, with control frames allowed in between. Sizes are decided from the frame
header, before the payload is buffered: a message that would grow past ``hard_limit`` bytes is
refused at once. A broken frame raises ``FrameError`` carrying the close code RFC 6455 asks for
(1002 protocol error, 1007 invalid UTF-8, 1009 too big).

The encoders build server frames, which are never masked and never fragmented; no extension is
negotiated, so the frame format is fixed.
"""

from __future__ import annotations

import functools
import struct

from websockets.speedups import apply_mask

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_DATA_OPCODES = (CONTINUATION, TEXT, BINARY)
_CONTROL_OPCODES = (CLOSE, PING, PONG)
MAX_CONTROL_PAYLOAD = 125

PROTOCOL_ERROR, NO_STATUS, INVALID_PAYLOAD, MESSAGE_TOO_BIG = 1002, 1005, 1007, 1009


class FrameError(Exception):
    """The client broke the framing; close with ``code`` and read nothing more."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Control:
    """A ping, pong or close frame; a close carries its status ``code`` (1005: none given)."""

    __slots__ = ("code", "opcode", "payload")

    def __init__(self, opcode: int, payload: bytes, code: int = NO_STATUS) -> None:
        self.opcode = opcode
        self.payload = payload
        self.code = code


Message = str | bytes | Control


# XOR with the repeated 4-byte mask: websockets' C helper, 8x a big-integer XOR in Python at
# 300 bytes and 150x at 64 KiB (docs/performance.md); the name bound to it, not a wrapper.
unmask = apply_mask


def close_code_allowed(code: int) -> bool:
    """Codes a peer may send in a close frame (RFC 6455 7.4, IANA registry)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def _close(payload: bytes) -> Control:
    if not payload:
        return Control(CLOSE, payload)
    if len(payload) == 1:
        raise FrameError(PROTOCOL_ERROR, "close payload of one byte")
    code = int.from_bytes(payload[:2], "big")
    if not close_code_allowed(code):
        raise FrameError(PROTOCOL_ERROR, f"close code {code} is not allowed")
    try:
        payload[2:].decode()
    except UnicodeDecodeError:
        raise FrameError(INVALID_PAYLOAD, "close reason is not UTF-8") from None
    return Control(CLOSE, payload, code)


def _text(payload: bytes) -> str:
    try:
        return payload.decode()
    except UnicodeDecodeError:
        raise FrameError(INVALID_PAYLOAD, "text message is not UTF-8") from None


class Decoder:
    """Client frames in, whole messages out. One per connection; holds only a partial frame
    and the fragments of an unfinished message."""

    __slots__ = ("_buffer", "_opcode", "_parts", "_size", "hard_limit")

    def __init__(self, hard_limit: int) -> None:
        self.hard_limit = hard_limit
        self._buffer = b""
        self._parts: list[bytes] | None = None  # fragments of the message being received
        self._size = 0
        self._opcode = CONTINUATION  # TEXT or BINARY while a fragmented message is open

    def feed(self, data: bytes) -> list[Message]:
        """Every whole message completed by ``data``, in order. Raises FrameError."""
        buffer = self._buffer + data if self._buffer else data
        end = len(buffer)
        position = 0
        messages: list[Message] = []
        while end - position >= 2:
            first, second = buffer[position], buffer[position + 1]
            opcode, final = first & 0x0F, first & 0x80
            if first & 0x70:
                raise FrameError(PROTOCOL_ERROR, "reserved bits set without an extension")
            if not second & 0x80:
                raise FrameError(PROTOCOL_ERROR, "client frames must be masked")
            length = second & 0x7F
            start = position + 2
            if length == 126:
                if end - start < 2:
                    break
                length = int.from_bytes(buffer[start : start + 2], "big")
                start += 2
            elif length == 127:
                if end - start < 8:
                    break
                length = int.from_bytes(buffer[start : start + 8], "big")
                start += 8
            # The common case, a whole text message in one frame, passes every header check
            # by construction once its length fits: no further calls for it.
            whole_text = opcode == TEXT and final and self._parts is None
            if not whole_text or length > self.hard_limit:
                self._check_header(opcode, bool(final), length)
            stop = start + 4 + length
            if stop > end:
                break
            payload = unmask(buffer[start + 4 : stop], buffer[start : start + 4])
            position = stop
            if whole_text:
                messages.append(_text(payload))
            elif (message := self._complete(opcode, bool(final), payload)) is not None:
                messages.append(message)
        self._buffer = buffer[position:]
        return messages

    def _check_header(self, opcode: int, final: bool, length: int) -> None:
        """Refuse a frame from its header alone, before any of its payload is kept."""
        if opcode in _CONTROL_OPCODES:
            if not final:
                raise FrameError(PROTOCOL_ERROR, "fragmented control frame")
            if length > MAX_CONTROL_PAYLOAD:
                raise FrameError(PROTOCOL_ERROR, "control frame payload over 125 bytes")
            return
        if opcode not in _DATA_OPCODES:
            raise FrameError(PROTOCOL_ERROR, f"reserved opcode {opcode:#x}")
        if opcode == CONTINUATION and self._parts is None:
            raise FrameError(PROTOCOL_ERROR, "continuation frame without a message to continue")
        if opcode != CONTINUATION and self._parts is not None:
            raise FrameError(PROTOCOL_ERROR, "new message inside a fragmented one")
        if self._size + length > self.hard_limit:
            raise FrameError(MESSAGE_TOO_BIG, "message too big")

    def _complete(self, opcode: int, final: bool, payload: bytes) -> Message | None:
        if opcode >= CLOSE:
            return _close(payload) if opcode == CLOSE else Control(opcode, payload)
        if final and self._parts is None:  # a whole binary message (whole text: feed's)
            return payload
        if self._parts is None:
            self._parts, self._opcode = [], opcode
        self._parts.append(payload)
        self._size += len(payload)
        if not final:
            return None
        whole = b"".join(self._parts)
        kind = self._opcode
        self._parts, self._size, self._opcode = None, 0, CONTINUATION
        return _text(whole) if kind == TEXT else whole


# Frame headers packed in one call, then one concatenation: half the cost of building them
# from bytes() and int.to_bytes() pieces, on every frame sent.
_SHORT, _MEDIUM, _LONG = struct.Struct(">BB"), struct.Struct(">BBH"), struct.Struct(">BBQ")


def _frame(opcode: int, payload: bytes) -> bytes:
    size = len(payload)
    first = 0x80 | opcode
    if size < 126:
        return _SHORT.pack(first, size) + payload
    if size < 1 << 16:
        return _MEDIUM.pack(first, 126, size) + payload
    return _LONG.pack(first, 127, size) + payload


# One server text frame around UTF-8 ``payload`` (already-encoded JSON, relayed as is); a
# partial, not a function: one Python call per frame sent, not two.
text_frame = functools.partial(_frame, TEXT)


def close_frame(code: int, reason: str = "") -> bytes:
    """A close frame; 1005 (no status) is sent as an empty payload, as RFC 6455 requires."""
    if code == NO_STATUS:
        return _frame(CLOSE, b"")
    # Cut to fit a control frame, at a character boundary: the reason must stay UTF-8.
    cut = reason.encode()[: MAX_CONTROL_PAYLOAD - 2].decode(errors="ignore").encode()
    return _frame(CLOSE, code.to_bytes(2, "big") + cut)


def pong_frame(payload: bytes) -> bytes:
    return _frame(PONG, payload)


PING_FRAME = _frame(PING, b"")
