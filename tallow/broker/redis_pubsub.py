"""This replica's channel, read from a Redis connection of its own, many messages per read.

coredis' pub/sub runs consumer tasks and a queue and builds an object per message; profiled at
100 pairs relaying across replicas, that machinery took about a quarter of the receiving
replica's time. Here the broker's subscriber task itself reads the socket (a ``redis_link``),
splits off every complete push and hands the frames over before it reads again.

It subscribes with SUBSCRIBE, or SSUBSCRIBE in a Redis Cluster (sharded pub/sub, on the node
that serves the channel's slot, found by ``redis_connect.node_for``). Redis ending the
subscription (``sunsubscribe`` when a slot moves, the connection closing when Redis stops)
raises ``BrokerUnavailable`` once the frames read before it are handed over: the broker
subscribes again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from tallow.broker.base import BrokerUnavailable
from tallow.broker.redis_link import Endpoint, Link, connect
from tallow.broker.resp import Reply, ReplyError, encode

_MESSAGES = (b"message", b"smessage")
_DROPPED = (b"unsubscribe", b"sunsubscribe")


class Subscription:
    """A subscribed connection: ``receive`` returns the next read's frames."""

    def __init__(self, link: Link) -> None:
        self._link = link
        self._ended: BrokerUnavailable | None = None  # raised once the frames before it are out

    async def receive(self) -> list[bytes]:
        """The payloads of the messages in the next read (at least one), in order."""
        while True:
            frames = self._frames(self._link.take())
            if frames:
                return frames
            if self._ended is not None:
                raise self._ended
            await self._link.read_more()

    def _frames(self, pushes: list[Reply]) -> list[bytes]:
        frames = []
        for push in pushes:
            if isinstance(push, bytes):  # a message's payload, split off by the shortcut
                frames.append(push)
            elif isinstance(push, list) and push:
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
        return frames


@asynccontextmanager
async def subscribe(
    endpoint: Endpoint, channel: str, *, sharded: bool, within: float
) -> AsyncIterator[Subscription]:
    """Connect, log in and subscribe to ``channel`` within ``within`` seconds."""
    with trio.fail_after(within):
        link = await connect(endpoint)
    try:
        with trio.fail_after(within):
            subscription = await start(link, endpoint, channel, sharded=sharded)
        yield subscription
    finally:
        await link.aclose()


async def start(link: Link, endpoint: Endpoint, channel: str, *, sharded: bool) -> Subscription:
    """Log in and subscribe on ``link``, in one write."""
    link.reader.shortcut = message_head(channel, sharded=sharded)
    await link.log_in(endpoint, encode("SSUBSCRIBE" if sharded else "SUBSCRIBE", channel))
    return Subscription(link)


def message_head(channel: str, *, sharded: bool) -> bytes:
    """How every message on ``channel`` starts, up to its payload's length (RESP2)."""
    kind = b"smessage" if sharded else b"message"
    name = channel.encode()
    return b"*3\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$" % (len(kind), kind, len(name), name)
