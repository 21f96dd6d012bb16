"""This replica's channel, read from a Redis connection of its own, many messages per read.

coredis' pub/sub runs consumer tasks and a queue and builds an object per message; profiled at
100 pairs relaying across replicas, that machinery took about a quarter of the receiving
replica's time. Here the broker's subscriber task itself reads the socket, splits off every
complete push (``resp``) and hands the frames over before it reads again.

The connection is plain TCP or TLS, authenticates like the rest of the client, and subscribes
with SUBSCRIBE, or SSUBSCRIBE in a Redis Cluster (sharded pub/sub, on the node that serves the
channel's slot, found by ``redis_connect.channel_node``). Redis ending the subscription
(``sunsubscribe`` when a slot moves, the connection closing when Redis stops) raises
``BrokerUnavailable``: the broker subscribes again.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import trio

from tallow.broker.base import BrokerUnavailable
from tallow.broker.resp import Reply, ReplyError, RespReader, encode

READ_SIZE = 256 * 1024  # bytes per read: at 100 pairs a read carries tens of messages
_MESSAGES = (b"message", b"smessage")
_DROPPED = (b"unsubscribe", b"sunsubscribe")


@attrs.frozen
class Endpoint:
    """One Redis node and how to log in to it."""

    host: str
    port: int
    tls: ssl.SSLContext | None = None
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)


class Subscription:
    """A subscribed connection: ``receive`` returns the next read's frames."""

    def __init__(self, stream: trio.abc.Stream, reader: RespReader, early: list[Reply]) -> None:
        self._stream = stream
        self._reader = reader
        self._pushes = early  # parsed, not yet taken: at first what came with the confirmation
        self._ended: BrokerUnavailable | None = None  # raised once the frames before it are out

    async def receive(self) -> list[bytes]:
        """The payloads of the messages in the next read (at least one), in order."""
        while True:
            frames = self._frames()
            if frames:
                return frames
            if self._ended is not None:
                raise self._ended
            data = await self._stream.receive_some(READ_SIZE)
            if not data:
                raise BrokerUnavailable("subscription closed by Redis")
            self._pushes = self._reader.feed(data)

    def _frames(self) -> list[bytes]:
        frames = []
        for push in self._pushes:
            if isinstance(push, list) and push:
                kind = push[0]
                if kind in _MESSAGES and isinstance(payload := push[-1], bytes):
                    frames.append(payload)
                elif kind in _DROPPED:
                    # In a cluster: the slot moved (failover, resharding); subscribe where it is.
                    self._ended = BrokerUnavailable("subscription dropped by Redis")
                    break
            elif isinstance(push, ReplyError):
                self._ended = BrokerUnavailable(f"subscription refused: {push}")
                break
        self._pushes = []
        return frames


@asynccontextmanager
async def subscribe(
    endpoint: Endpoint, channel: str, *, sharded: bool, within: float
) -> AsyncIterator[Subscription]:
    """Connect, log in and subscribe to ``channel`` within ``within`` seconds."""
    with trio.fail_after(within):
        stream: trio.abc.Stream = await trio.open_tcp_stream(endpoint.host, endpoint.port)
    try:
        with trio.fail_after(within):
            if endpoint.tls is not None:
                stream = trio.SSLStream(stream, endpoint.tls, server_hostname=endpoint.host)
                await stream.do_handshake()
            subscription = await start(stream, endpoint, channel, sharded=sharded)
        yield subscription
    finally:
        await trio.aclose_forcefully(stream)


async def start(
    stream: trio.abc.Stream, endpoint: Endpoint, channel: str, *, sharded: bool
) -> Subscription:
    """Log in (if the endpoint has a password) and subscribe, in one write, on ``stream``."""
    commands = []
    if endpoint.password is not None:
        user = (endpoint.username,) if endpoint.username else ()
        commands.append(encode("AUTH", *user, endpoint.password))
    commands.append(encode("SSUBSCRIBE" if sharded else "SUBSCRIBE", channel))
    await stream.send_all(b"".join(commands))
    reader = RespReader()
    replies: list[Reply] = []
    while len(replies) < len(commands):
        data = await stream.receive_some(READ_SIZE)
        if not data:
            raise BrokerUnavailable("connection closed by Redis while subscribing")
        replies += reader.feed(data)
    for reply in replies[: len(commands)]:
        if isinstance(reply, ReplyError):
            raise BrokerUnavailable(f"subscription refused: {reply}")
    return Subscription(stream, reader, replies[len(commands) :])
