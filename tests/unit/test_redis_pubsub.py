"""The lean subscriber in process: RESP split and joined across reads, the subscription's
handshake and the pushes that end it, over trio.testing's in-memory streams."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from tallow.broker.base import BrokerUnavailable
from tallow.broker.redis_link import Endpoint, Link
from tallow.broker.redis_pubsub import Subscription, message_head, start
from tallow.broker.resp import ProtocolError, ReplyError, RespReader, encode

CHANNEL = "tallow:ch:node-1"


def message(payload: bytes, kind: bytes = b"message") -> bytes:
    """A push as Redis sends it to a subscriber (RESP2)."""
    channel = CHANNEL.encode()
    return b"*3\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
        len(kind),
        kind,
        len(channel),
        channel,
        len(payload),
        payload,
    )


def confirmation(kind: bytes = b"subscribe") -> bytes:
    channel = CHANNEL.encode()
    return b"*3\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n:1\r\n" % (len(kind), kind, len(channel), channel)


def test_encode_writes_an_array_of_bulk_strings() -> None:
    expected = b"*3\r\n$9\r\nSUBSCRIBE\r\n$4\r\na\r\nb\r\n$1\r\n7\r\n"
    assert encode("SUBSCRIBE", b"a\r\nb", 7) == expected


def test_every_reply_type_parses_and_many_come_from_one_read() -> None:
    data = b"+OK\r\n:42\r\n$-1\r\n*-1\r\n$0\r\n\r\n-ERR wrong\r\n*2\r\n*1\r\n:1\r\n$3\r\nabc\r\n"
    replies = RespReader().feed(data)
    assert replies[:5] == [b"OK", 42, None, None, b""]
    assert isinstance(replies[5], ReplyError) and str(replies[5]) == "ERR wrong"
    assert replies[6:] == [[[1], b"abc"]]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
def test_replies_split_at_every_byte_come_out_whole_and_in_order(size: int) -> None:
    # A payload holding CRLF and RESP-looking bytes: only the length prefix delimits it.
    payloads = [b"d peer-1\n{}", b"x" * 300, b"*1\r\n$1\r\nz\r\n", b""]
    stream = b"".join(message(payload) for payload in payloads)
    reader, replies = RespReader(), []
    for offset in range(0, len(stream), size):
        replies += reader.feed(stream[offset : offset + size])
    assert [reply[2] for reply in replies] == payloads  # type: ignore[index]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
@pytest.mark.parametrize("sharded", [False, True])
def test_the_shortcut_splits_messages_off_whole_at_every_byte(size: int, sharded: bool) -> None:
    """A subscription's messages come back as their payloads; any other reply as parsed."""
    kind = b"smessage" if sharded else b"message"
    payloads = [b"d peer-1\n{}", b"x" * 300, b"*1\r\n$1\r\nz\r\n", b""]
    stream = b"".join(message(payload, kind) for payload in payloads[:2]) + confirmation()
    stream += message(b"other kind", b"pmessage"[: len(kind)])  # not the shortcut's shape
    stream += b"".join(message(payload, kind) for payload in payloads[2:])
    reader, replies = RespReader(), []
    reader.shortcut = message_head(CHANNEL, sharded=sharded)
    for offset in range(0, len(stream), size):
        replies += reader.feed(stream[offset : offset + size])
    channel = CHANNEL.encode()
    other = [b"pmessage"[: len(kind)], channel, b"other kind"]
    assert replies == [*payloads[:2], [b"subscribe", channel, 1], other, *payloads[2:]]


def test_bytes_that_are_not_resp_fail_loudly() -> None:
    with pytest.raises(ProtocolError):
        RespReader().feed(b"?what\r\n")


async def handshake(
    endpoint: Endpoint, reply: bytes, *, sharded: bool = False
) -> tuple[trio.abc.Stream, bytes, Subscription | BrokerUnavailable]:
    """Run ``start`` against a fake Redis that answers ``reply``: Redis' end of the stream,
    what the subscriber sent, and the subscription or why it failed."""
    ours, theirs = trio.testing.memory_stream_pair()
    result: list[Subscription | BrokerUnavailable] = []

    async def subscriber() -> None:
        try:
            result.append(await start(Link(ours), endpoint, CHANNEL, sharded=sharded))
        except BrokerUnavailable as error:
            result.append(error)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(subscriber)
        sent = bytes(await theirs.receive_some())
        await theirs.send_all(reply)
    return theirs, sent, result[0]


async def test_auth_and_subscribe_go_in_one_write_and_early_messages_are_kept() -> None:
    endpoint = Endpoint("127.0.0.1", 6379, None, "tallow", "secret")
    # The confirmation and the first messages arrive in one read.
    reply = b"+OK\r\n" + confirmation() + message(b"first") + message(b"second")
    theirs, sent, subscription = await handshake(endpoint, reply)
    assert isinstance(subscription, Subscription)
    assert sent == encode("AUTH", "tallow", "secret") + encode("SUBSCRIBE", CHANNEL)
    assert await subscription.receive() == [b"first", b"second"]
    await theirs.send_all(message(b"third")[:10])
    await theirs.send_all(message(b"third")[10:] + message(b"fourth", b"smessage"))
    assert await subscription.receive() == [b"third", b"fourth"]


async def test_a_password_alone_uses_the_default_user_and_a_cluster_subscribes_sharded() -> None:
    endpoint = Endpoint("127.0.0.1", 6379, None, None, "secret")
    _, sent, _ = await handshake(endpoint, b"+OK\r\n" + confirmation(b"ssubscribe"), sharded=True)
    assert sent == encode("AUTH", "secret") + encode("SSUBSCRIBE", CHANNEL)


async def test_a_refused_login_fails_the_subscription() -> None:
    endpoint = Endpoint("127.0.0.1", 6379, None, None, "wrong")
    reply = b"-WRONGPASS invalid username-password pair\r\n-NOAUTH Authentication required.\r\n"
    _, _, error = await handshake(endpoint, reply)
    assert isinstance(error, BrokerUnavailable) and "WRONGPASS" in str(error)


@pytest.mark.parametrize(
    ("push", "reason"),
    [
        (confirmation(b"sunsubscribe"), "dropped"),  # a cluster slot moved away
        (b"-MOVED 1234 127.0.0.1:7001\r\n", "MOVED"),
        (b"", "closed"),  # Redis went away
    ],
)
async def test_what_ends_a_subscription_raises_after_the_messages_before_it(
    push: bytes, reason: str
) -> None:
    theirs, _, subscription = await handshake(Endpoint("127.0.0.1", 6379), confirmation())
    assert isinstance(subscription, Subscription)
    # Frames read together with the end are handed over first; nothing after the end counts.
    await theirs.send_all(message(b"before") + push + (message(b"after") if push else b""))
    if not push:
        await theirs.aclose()
    assert await subscription.receive() == [b"before"]
    with pytest.raises(BrokerUnavailable, match=reason):
        await subscription.receive()
