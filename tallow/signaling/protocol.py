"""Wire format of signaling protocol version 1: error codes, close codes and message checks."""

from __future__ import annotations

from collections.abc import Container
from typing import Any

import orjson

VERSION = 1

# Stable error codes (PROTOCOL.md). ``queue-full`` is a documented extension (docs/protocol.md).
BAD_JSON = "bad-json"
BAD_MESSAGE = "bad-message"
UNKNOWN_TYPE = "unknown-type"
TOO_LARGE = "too-large"
BINARY_UNSUPPORTED = "binary-unsupported"
RATE_LIMITED = "rate-limited"
BAD_ROOM = "bad-room"
ROOM_FULL = "room-full"
ALREADY_IN_ROOM = "already-in-room"
NOT_IN_ROOM = "not-in-room"
PEER_NOT_FOUND = "peer-not-found"
QUEUE_FULL = "queue-full"
UNAVAILABLE = "unavailable"
DRAINING = "draining"
INTERNAL = "internal"

ERROR_CODES = (
    BAD_JSON,
    BAD_MESSAGE,
    UNKNOWN_TYPE,
    TOO_LARGE,
    BINARY_UNSUPPORTED,
    RATE_LIMITED,
    BAD_ROOM,
    ROOM_FULL,
    ALREADY_IN_ROOM,
    NOT_IN_ROOM,
    PEER_NOT_FOUND,
    QUEUE_FULL,
    UNAVAILABLE,
    DRAINING,
    INTERNAL,
)

# Close codes the server uses. 4000 is an extension: another connection resumed this peer.
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011
CLOSE_TRY_AGAIN = 1013
CLOSE_SUPERSEDED = 4000

MAX_ID_CHARS = 64
MAX_NAME_CHARS = 64
MAX_META_BYTES = 1024


class ProtocolError(Exception):
    """A client message the server refuses; becomes an ``error`` reply with ``code``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def encode(message: Any) -> bytes:
    """The frame for ``message``; client data that orjson cannot write is the client's error.

    orjson reads JSON nested 1024 levels deep but writes at most 254, so a client's ``data``
    can parse fine and still not fit in the frame relayed around it.
    """
    try:
        return orjson.dumps(message)
    except orjson.JSONEncodeError:
        raise ProtocolError(BAD_MESSAGE, "the message is nested too deeply") from None


_RELAYED_HEADS = {
    kind: b'{"type":"%s","from":"' % kind.encode() for kind in ("signal", "broadcast")
}


def relayed(kind: str, sender: str, data: Any) -> bytes:
    """``encode({"type": kind, "from": sender, "data": data})``, byte for byte, written around
    ``data`` without building the dict. ``sender`` is a peer id the server made (URL-safe
    base64: nothing in it to escape)."""
    written = encode(data)
    return b"".join((_RELAYED_HEADS[kind], sender.encode(), b'","data":', written, b"}"))


def decode(text: str) -> dict[str, Any]:
    """Parse one client frame into a JSON object (its ``type`` is checked by ``kind``)."""
    try:
        message = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ProtocolError(BAD_JSON, "the message is not valid JSON") from None
    if not isinstance(message, dict):
        raise ProtocolError(BAD_MESSAGE, "a message must be a JSON object")
    return message


def kind(message: dict[str, Any], known: Container[str]) -> str:
    """The message's ``type``, one of ``known`` (the session's handler table)."""
    value = message.get("type")
    if not isinstance(value, str):
        raise ProtocolError(BAD_MESSAGE, 'a message needs a string "type"')
    if value not in known:
        raise ProtocolError(UNKNOWN_TYPE, f"unknown message type {value[:64]!r}")
    return value


def request_id(message: dict[str, Any]) -> str | int | None:
    """The client's ``id`` to echo as ``re``, if it is a valid one."""
    value = message.get("id")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ProtocolError(BAD_MESSAGE, '"id" must be a string or an integer')
    if len(str(value)) > MAX_ID_CHARS:
        raise ProtocolError(BAD_MESSAGE, f'"id" is longer than {MAX_ID_CHARS} characters')
    return value


def display_name(message: dict[str, Any]) -> str:
    name = message.get("name", "")
    if not isinstance(name, str):
        raise ProtocolError(BAD_MESSAGE, '"name" must be a string')
    if len(name) > MAX_NAME_CHARS:
        raise ProtocolError(BAD_MESSAGE, f'"name" is longer than {MAX_NAME_CHARS} characters')
    return name


def metadata(message: dict[str, Any]) -> dict[str, Any]:
    meta = message.get("meta", {})
    if not isinstance(meta, dict):
        raise ProtocolError(BAD_MESSAGE, '"meta" must be a JSON object')
    # Checked three levels down, where `joined` lists it (peers -> member -> meta): a meta that
    # passes here can be written into every later reply about its peer.
    if len(encode({"peers": [{"meta": meta}]})) > MAX_META_BYTES + len('{"peers":[{"meta":}]}'):
        raise ProtocolError(BAD_MESSAGE, f'"meta" is larger than {MAX_META_BYTES} bytes')
    return meta


def target(message: dict[str, Any]) -> str:
    to = message.get("to")
    if not isinstance(to, str) or not to:
        raise ProtocolError(BAD_MESSAGE, '"to" must be a peer id string')
    return to


def payload(message: dict[str, Any]) -> Any:
    if "data" not in message:
        raise ProtocolError(BAD_MESSAGE, f'"{message["type"]}" needs "data"')
    return message["data"]
