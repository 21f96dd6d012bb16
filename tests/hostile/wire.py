"""Raw WebSocket clients for hostile tests: any source address on loopback, JSON helpers, and a
verdict on how the server answered a case (a documented error, a documented close, or a reply)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import threading
from collections import Counter
from typing import Any

import attrs

from tallow.signaling import protocol as p
from tests.raw_websocket import CLOSE, PING, PONG, TEXT, RawWebSocket, frame_header

# Close codes a client may see: the server's own (PROTOCOL.md, docs/protocol.md), plus the two
# that RFC 6455 makes the WebSocket layer send for a broken frame (the codec sends them itself).
SERVER_CLOSE_CODES = {
    p.CLOSE_GOING_AWAY,
    p.CLOSE_POLICY,
    p.CLOSE_TOO_BIG,
    p.CLOSE_INTERNAL,
    p.CLOSE_TRY_AGAIN,
    p.CLOSE_SUPERSEDED,
}
RFC_PROTOCOL_ERROR, RFC_INVALID_PAYLOAD = 1002, 1007
DOCUMENTED_CLOSE_CODES = SERVER_CLOSE_CODES | {RFC_PROTOCOL_ERROR, RFC_INVALID_PAYLOAD}
REPLY_TYPES = {"pong", "created", "joined", "left", "error", "signal", "broadcast", "peer-joined"}
END_MARK = "hostile-end"


class RawClient(RawWebSocket):
    """RawWebSocket from a chosen loopback source address (127.0.0.0/8 is all loopback on Linux),
    so tests can be many distinct clients without a proxy."""

    def __init__(self, port: int, source: str = "127.0.0.1", timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(
            ("127.0.0.1", port), timeout=timeout, source_address=(source, 0)
        )
        self.buffer = b""
        self.welcome: dict[str, Any] = {}

    def send_frame(self, opcode: int, payload: bytes, fin: bool = True) -> None:
        """As RawWebSocket.send_frame, masking with big-integer XOR (floods send megabytes)."""
        mask = os.urandom(4)
        size = len(payload)
        keystream = int.from_bytes((mask * (size // 4 + 1))[:size], "big")
        body = (int.from_bytes(payload, "big") ^ keystream).to_bytes(size, "big")
        self.sock.sendall(frame_header(opcode, size, fin) + mask + body)

    @classmethod
    def connect(cls, port: int, source: str = "127.0.0.1", timeout: float = 10.0) -> RawClient:
        client = cls(port, source, timeout)
        client.handshake()
        opcode, payload = client.read_message()
        assert opcode == TEXT, (opcode, payload)
        client.welcome = json.loads(payload)
        assert client.welcome["type"] == "welcome", client.welcome
        return client

    @property
    def peer(self) -> str:
        return self.welcome["peer"]

    def send_json(self, message: dict[str, Any]) -> None:
        self.send_frame(TEXT, json.dumps(message).encode())

    def recv_json(self) -> dict[str, Any]:
        opcode, payload = self.read_message()
        if opcode == CLOSE:
            code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
            raise ConnectionError(f"closed by the server with {code}")
        return json.loads(payload)

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        self.send_json(message)
        return self.recv_json()

    def shut(self) -> None:
        """Close politely (so the server frees the slot at once), then drop the socket."""
        with contextlib.suppress(OSError):
            self.send_frame(CLOSE, struct.pack("!H", 1000))
        self.close()


@attrs.define
class Verdict:
    """What the server did with one hostile case."""

    errors: list[str] = attrs.Factory(list)  # error codes replied, in order
    close_code: int | None = None  # set when the server closed the connection
    alive: bool = False  # the connection answered the closing ping afterwards


def judge(client: RawClient) -> Verdict:
    """After a case was sent: send a marked ping and read until its pong or a close.

    Every frame on the way must be a known reply type; every error must carry a stable code.
    A connection that neither answers nor closes within the socket timeout fails the case.
    """
    verdict = Verdict()
    # The server may already have closed; its close frame is still in the buffer.
    with contextlib.suppress(OSError):
        client.send_frame(TEXT, json.dumps({"type": "ping", "id": END_MARK}).encode())
    while True:
        try:
            opcode, payload = client.read_frame()
        except ConnectionError:
            raise AssertionError("TCP closed without a WebSocket close frame") from None
        if opcode in (PING, PONG):
            continue
        if opcode == CLOSE:
            verdict.close_code = struct.unpack("!H", payload[:2])[0] if payload else None
            assert verdict.close_code in DOCUMENTED_CLOSE_CODES, verdict
            return verdict
        assert opcode == TEXT, opcode
        reply = json.loads(payload)
        assert reply.get("type") in REPLY_TYPES, reply
        if reply["type"] == "error":
            assert reply["code"] in p.ERROR_CODES and reply["code"] != p.INTERNAL, reply
            verdict.errors.append(reply["code"])
        elif reply["type"] == "pong" and reply.get("re") == END_MARK:
            verdict.alive = True
            return verdict


class Collector:
    """Reads everything a client is sent, in a thread, until the server closes it (or ``stop``):
    a flooding client must keep reading its replies, or it becomes a slow reader itself."""

    def __init__(self, client: RawClient) -> None:
        self.client = client
        self.replies: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                opcode, payload = self.client.read_frame()
                if opcode == CLOSE:
                    self.close_code = struct.unpack("!H", payload[:2])[0] if payload else 1005
                    return
                if opcode == TEXT:
                    self.replies.append(json.loads(payload))
        except OSError:
            return  # socket closed under us by stop(), or by the server without a close frame

    def codes(self) -> Counter[str]:
        return Counter(reply.get("code", reply["type"]) for reply in self.replies)

    def wait(self, timeout: float) -> None:
        self._thread.join(timeout)

    def stop(self) -> None:
        self.client.close()
        self._thread.join(10)
