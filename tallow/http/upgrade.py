"""/signaling: from a WebSocket upgrade request to a running session, on one path.

Whichever way the request arrived (first on a fresh connection, which is how browsers open a
WebSocket, or after other requests on a kept-alive one, handed over by hypercorn), it becomes a
``Handshake`` and goes through ``accept_upgrade``: the log line, the Origin check, the 101 or the
refusal, the per-address limit; then its session runs on the raw socket (in a task of its own
for a fresh connection, in hypercorn's for a handed-over one: ``serve_upgrade``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import socket
from collections.abc import Iterable
from urllib.parse import parse_qs, urlsplit

import attrs
import trio

from tallow.http.admission import TOO_MANY, over_connection_limit, refuse_upgrade
from tallow.http.clients import client_address
from tallow.http.messages import request_id
from tallow.observability.logs import event
from tallow.signaling import protocol as p
from tallow.signaling.codec import close_frame
from tallow.signaling.outbox import write_all
from tallow.signaling.service import SignalingService
from tallow.signaling.session import Session
from tallow.signaling.transport import SocketTransport

log = logging.getLogger("tallow.http")

HARD_LIMIT_FACTOR = 4  # messages over 4x TALLOW_MAX_MESSAGE_BYTES are cut with 1009 at once
RESPONSE_TIMEOUT = 5.0  # seconds to hand over the 101, a refusal or a first close frame
_ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 1.3
BAD_HANDSHAKE = b'{"error":"bad-handshake","message":"not a WebSocket upgrade"}\n'


@attrs.frozen
class Handshake:
    """What a /signaling upgrade asked for; nothing of it is kept once the session runs."""

    path: str
    key: str  # Sec-WebSocket-Key
    origin: str | None
    host: str | None
    client: str  # the client's address (X-Forwarded-For believed only from trusted proxies)
    resume: str | None
    request_id: str

    @classmethod
    def from_request(
        cls, target: str, headers: dict[str, str], peer: str, service: SignalingService
    ) -> Handshake | None:
        """The handshake in a request (``headers``: lower-case names, repeats joined with
        ", "), or None when it is not a valid RFC 6455 upgrade."""
        key = headers.get("sec-websocket-key", "")
        connection = {token.strip() for token in headers.get("connection", "").lower().split(",")}
        if (
            "upgrade" not in connection
            or headers.get("upgrade", "").lower() != "websocket"
            or headers.get("sec-websocket-version") != "13"
            or not _valid_key(key)
        ):
            return None
        parts = urlsplit(target)
        forwarded = headers.get("x-forwarded-for")
        client, _ = client_address(peer, forwarded, service.settings.trusted_proxies)
        return cls(
            path=parts.path,
            key=key,
            origin=headers.get("origin"),
            host=headers.get("host"),
            client=client,
            resume=parse_qs(parts.query).get("resume", [None])[0],
            request_id=request_id(headers.get("x-request-id")),
        )

    @classmethod
    def parse(cls, head: bytes, peer: str, service: SignalingService) -> Handshake | None:
        """The handshake in a raw HTTP/1.1 request head (without its blank line)."""
        request_line, *lines = head.decode("latin-1").split("\r\n")
        method, _, rest = request_line.partition(" ")
        target, _, version = rest.partition(" ")
        if method != "GET" or version != "HTTP/1.1":
            return None
        pairs = []
        for line in lines:
            name, colon, value = line.partition(":")
            if not colon or not name or name != name.strip():
                return None
            pairs.append((name.lower(), value.strip()))
        headers = joined_headers(pairs)
        if "host" not in headers:
            return None
        return cls.from_request(target, headers, peer, service)


def joined_headers(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Header values by lower-case name, repeated headers joined with ", " (RFC 9110 5.3)."""
    headers: dict[str, str] = {}
    for name, value in pairs:
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def _valid_key(key: str) -> bool:
    try:
        return len(base64.b64decode(key, validate=True)) == 16
    except binascii.Error:
        return False


# Status lines carry no reason phrase, as h11 (and so wsproto and hypercorn) writes them.


def switching_protocols(key: str) -> bytes:
    """The 101 that accepts a WebSocket upgrade asked for with Sec-WebSocket-Key ``key``."""
    digest = base64.b64encode(hashlib.sha1(key.encode() + _ACCEPT_GUID).digest())
    return (
        b"HTTP/1.1 101 \r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + digest + b"\r\n\r\n"
    )


def _refusal(status: int, body: bytes) -> bytes:
    return (
        f"HTTP/1.1 {status} \r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body


def fresh_upgrade(
    head: bytes, peer: str, service: SignalingService
) -> tuple[Handshake | None, bytes]:
    """The handshake in a fresh connection's first request head (None: not a valid one), and
    the bytes after the head (frames a client sent without waiting for the 101)."""
    request_head, _, early = head.partition(b"\r\n\r\n")
    return Handshake.parse(request_head, peer, service), early


async def accept_upgrade(
    service: SignalingService,
    sock: socket.socket,
    handshake: Handshake | None,
    early: bytes,
) -> tuple[Session, str | None] | None:
    """Admit, accept or refuse one upgrade: the session to run on the (non-blocking) socket
    and the resume token it asked for, or None once it is refused (the socket then closed).

    ``early`` are bytes the client sent after its request head; the session reads them first.
    Nothing of the handshake is kept by the session.
    """
    limit = service.settings.max_message_bytes * HARD_LIMIT_FACTOR
    transport = SocketTransport(sock, service.readiness, limit, early)
    accepted = False
    try:
        accepted = await _answer(service, transport, handshake)
    finally:
        if not accepted:
            transport.abort()
    assert handshake is not None  # only a handshake is accepted
    return Session(service, transport, handshake.client), handshake.resume


async def serve_upgrade(
    service: SignalingService,
    sock: trio.socket.SocketType,
    handshake: Handshake | None,
    early: bytes,
) -> None:
    """Accept or refuse one upgrade and run its session in this task until the connection
    ends (for an upgrade that hypercorn hands over)."""
    # A plain socket from here on: the Trio socket lets go of the number (hypercorn's close
    # of it then does nothing).
    plain = socket.socket(sock.family, sock.type, sock.proto, fileno=sock.detach())
    plain.setblocking(False)
    accepted = await accept_upgrade(service, plain, handshake, early)
    if accepted is not None:
        session, resume = accepted
        await session.run(resume)


async def _answer(
    service: SignalingService, transport: SocketTransport, handshake: Handshake | None
) -> bool:
    """Log the upgrade, then owe the 101 (True: run the session) or write a refusal (False)."""
    if handshake is None:
        await _refuse(transport, _refusal(400, BAD_HANDSHAKE))
        return False
    asked = {"path": handshake.path, "client": handshake.client}
    event(log, logging.INFO, "websocket", **asked, request_id=handshake.request_id)
    refusal = refuse_upgrade(service, handshake.origin, handshake.host)
    if refusal is not None:
        await _refuse(transport, _refusal(*refusal))
        return False
    # The 101 goes with the first frame: the welcome, or the refusal just below.
    transport.write_first(switching_protocols(handshake.key))
    if over_connection_limit(service, handshake.client):
        await _refuse(transport, close_frame(p.CLOSE_TRY_AGAIN, TOO_MANY))
        return False
    return True


async def _refuse(transport: SocketTransport, data: bytes) -> None:
    """Write a refusal, for RESPONSE_TIMEOUT at most (a cancel scope only on this path: an
    accepted upgrade writes nothing here)."""
    with trio.move_on_after(RESPONSE_TIMEOUT):
        await write_all(transport, data)
