"""The lean subscriber on a real redis-server: big messages split across reads come whole and in
order, a refused login and a Redis restart end the subscription instead of hanging it."""

from __future__ import annotations

import pytest
import trio

from harness.redis import RedisServer
from tallow.broker.base import BrokerUnavailable
from tallow.broker.redis_connect import open_client
from tallow.broker.redis_link import READ_SIZE, Endpoint
from tallow.broker.redis_pubsub import subscribe
from tallow.redis_url import parse_redis_url

CHANNEL = "tallow:ch:test"


def endpoint(server: RedisServer, password: str | None = None) -> Endpoint:
    return Endpoint("127.0.0.1", server.port, None, None, password)


async def test_messages_bigger_than_a_read_arrive_whole_and_in_order(
    redis_server: RedisServer,
) -> None:
    url = parse_redis_url(redis_server.url)
    assert url is not None
    # Payloads around and far above one read, between small ones, all published in one go.
    sizes = [10, 3 * READ_SIZE + 17, 20, READ_SIZE - 5, 300, READ_SIZE + 1, 0]
    payloads = [bytes([65 + index]) * size for index, size in enumerate(sizes)]
    async with (
        subscribe(endpoint(redis_server), CHANNEL, sharded=False, within=2.0) as subscription,
        open_client(url, op_timeout=2.0) as client,
    ):
        async with client.pipeline(transaction=False) as pipe:
            for payload in payloads:
                pipe.publish(CHANNEL, payload)
        received: list[bytes] = []
        reads = 0
        with trio.fail_after(10):
            while len(received) < len(payloads):
                received += await subscription.receive()
                reads += 1
    assert received == payloads
    assert reads > 1  # the big ones did not come in one read


async def test_a_redis_restart_ends_the_subscription(redis_server: RedisServer) -> None:
    async with subscribe(endpoint(redis_server), CHANNEL, sharded=False, within=2.0) as sub:
        redis_server.cli("PUBLISH", CHANNEL, "before")
        assert await sub.receive() == [b"before"]
        redis_server.restart()
        with trio.fail_after(5), pytest.raises(BrokerUnavailable, match="closed"):
            await sub.receive()
    # Subscribed again on the restarted server, messages flow.
    async with subscribe(endpoint(redis_server), CHANNEL, sharded=False, within=2.0) as sub:
        redis_server.cli("PUBLISH", CHANNEL, "after")
        assert await sub.receive() == [b"after"]


async def test_a_wrong_password_is_refused_and_the_right_one_subscribes(tmp_path) -> None:
    server = RedisServer(
        tmp_path / "secured", extra=["--requirepass", "s3cret"], cli_args=["-a", "s3cret"]
    ).start()
    try:
        with pytest.raises(BrokerUnavailable, match="WRONGPASS"):
            async with subscribe(endpoint(server, "wrong"), CHANNEL, sharded=False, within=2.0):
                pass
        async with subscribe(endpoint(server, "s3cret"), CHANNEL, sharded=False, within=2.0) as sub:
            server.cli("PUBLISH", CHANNEL, "in")
            assert await sub.receive() == [b"in"]
    finally:
        server.kill()
