"""A deliberately minimal, misbehaving WebSocket client on a plain socket, for hostile-input tests.

It can send what well-behaved libraries refuse to: frames before the handshake completes,
oversize length headers, invalid UTF-8, and clients that never read or answer pings.
"""

from __future__ import annotations

import os
import socket
import struct

HANDSHAKE = (
    b"GET /signaling HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)
TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def frame_header(opcode: int, length: int, fin: bool = True) -> bytes:
    first = (0x80 if fin else 0) | opcode
    if length < 126:
        return bytes([first, 0x80 | length])
    if length < 1 << 16:
        return bytes([first, 0x80 | 126]) + struct.pack("!H", length)
    return bytes([first, 0x80 | 127]) + struct.pack("!Q", length)


def masked(payload: bytes, mask: bytes) -> bytes:
    return bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))


class RawWebSocket:
    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buffer = b""

    def handshake(self) -> None:
        self.sock.sendall(HANDSHAKE)
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def send_frame(self, opcode: int, payload: bytes, fin: bool = True) -> None:
        mask = os.urandom(4)
        self.sock.sendall(frame_header(opcode, len(payload), fin) + mask + masked(payload, mask))

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the TCP connection")
        self.buffer += chunk

    def _take(self, count: int) -> bytes:
        while len(self.buffer) < count:
            self._fill()
        taken, self.buffer = self.buffer[:count], self.buffer[count:]
        return taken

    def read_frame(self) -> tuple[int, bytes]:
        first, second = self._take(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._take(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._take(8))
        return first & 0x0F, self._take(length)

    def read_message(self) -> tuple[int, bytes]:
        """The next data or close frame, skipping the server's pings."""
        while True:
            opcode, payload = self.read_frame()
            if opcode not in (PING, PONG):
                return opcode, payload

    def close_code(self) -> int:
        """Read frames until the server's close frame; its status code."""
        while True:
            opcode, payload = self.read_frame()
            if opcode == CLOSE:
                return struct.unpack("!H", payload[:2])[0]

    def close(self) -> None:
        self.sock.close()
