"""The least a Trio relay can do per signal: the yardstick for what Tallow's relay costs.

    .venv/bin/python bench/bare_relay.py --port PORT

`bench/compare.py --bare-relay` runs it beside Tallow and PeerJS server, as bench/bare_app.py
stands beside Tallow's HTTP side. It answers only what the generator (bench/loadgen.mjs) says to
Tallow (the upgrade, `join`, `signal`), with Tallow's own frame decoder and encoders, and does
nothing else: one task per connection waiting with Trio's `wait_readable`, each signal written
straight into its receiver's socket. No rooms, limits, rate limits, pings, ordering, resume,
metrics or logs: what it spends per message is what this interpreter and Trio cost before any of
Tallow's own work. It trusts its one client; it is not a server to expose.

With `--as-is` (for one pair only) it does not even read the JSON: each signal's text goes on,
unchanged, to the one other connection (the generator reads a `type` and `data` either way). Each
message is then a wake-up, one read, the frame decoded and one write: the floor under any Trio
relay on this interpreter.
"""

from __future__ import annotations

import argparse
import itertools
import socket
from functools import partial
from typing import Any

import orjson
import trio

from tallow.http.upgrade import switching_protocols
from tallow.signaling.codec import Decoder, text_frame
from tallow.signaling.protocol import relayed

RECEIVE_BYTES = 65536
MESSAGE_LIMIT = 1 << 20


class BareRelay:
    def __init__(self, as_is: bool) -> None:
        self._sockets: dict[str, socket.socket] = {}
        self._ids = itertools.count()
        self._as_is = as_is

    async def serve(self, stream: trio.SocketStream) -> None:
        with socket.socket(fileno=stream.socket.detach()) as sock:
            sock.setblocking(False)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = await _read(sock)
                if not chunk:
                    return
                head += chunk
            request, _, early = head.partition(b"\r\n\r\n")
            key = _websocket_key(request)
            if key is None:  # a plain request: the harness asking whether it is up
                sock.send(b"HTTP/1.1 200 \r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                return
            peer = f"bare{next(self._ids)}"
            welcome = text_frame(orjson.dumps({"type": "welcome", "peer": peer}))
            # A few hundred bytes: the socket's buffer takes them whole.
            sock.send(switching_protocols(key) + welcome)
            self._sockets[peer] = sock
            try:
                await self._relay(sock, peer, early)
            finally:
                del self._sockets[peer]

    async def _relay(self, sock: socket.socket, peer: str, data: bytes) -> None:
        decoder = Decoder(MESSAGE_LIMIT)
        while True:
            for message in decoder.feed(data):
                if not isinstance(message, str):
                    continue
                if self._as_is and message.startswith('{"type":"signal"'):
                    for name, receiver in self._sockets.items():
                        if name != peer:
                            receiver.send(text_frame(message.encode()))
                            break
                else:
                    self._handle(sock, peer, orjson.loads(message))
            data = await _read(sock)
            if not data:
                return

    def _handle(self, sock: socket.socket, peer: str, message: dict[str, Any]) -> None:
        # Frames of a few hundred bytes, one in flight per pair: a socket's buffer always has
        # room, so a plain non-blocking send writes them whole. A receiver that has just gone
        # (the generator closing at the end of a run) loses the frame.
        try:
            if message["type"] == "signal":
                receiver = self._sockets.get(message["to"])
                if receiver is not None:
                    receiver.send(text_frame(relayed("signal", peer, message["data"])))
            elif message["type"] == "join":
                joined = {"type": "joined", "room": message["room"], "peer": peer, "peers": []}
                sock.send(text_frame(orjson.dumps(joined)))
        except OSError:
            pass


async def _read(sock: socket.socket) -> bytes:
    """The next bytes from the client; b"" once it is gone."""
    while True:
        await trio.lowlevel.wait_readable(sock)
        try:
            return sock.recv(RECEIVE_BYTES)
        except BlockingIOError:
            continue
        except OSError:
            return b""


def _websocket_key(request: bytes) -> str | None:
    fields = (line.partition(":") for line in request.decode("latin-1").split("\r\n")[1:])
    headers = {name.strip().lower(): value.strip() for name, _, value in fields}
    return headers.get("sec-websocket-key") or None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--as-is",
        action="store_true",
        help="one pair only: forward each signal's text unread to the other connection",
    )
    args = parser.parse_args()
    relay = BareRelay(args.as_is)
    trio.run(partial(trio.serve_tcp, relay.serve, args.port, host=args.host))


if __name__ == "__main__":
    main()
