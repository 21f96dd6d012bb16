"""ScriptBatch on a real redis-server: replies reach their callers, in order, through restarts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import coredis
import pytest
import trio

from harness.redis import RedisServer
from tallow.broker.redis_batch import ScriptBatch
from tallow.broker.redis_connect import open_client
from tallow.redis_url import RedisURL, parse_redis_url


def redis_url(text: str) -> RedisURL:
    url = parse_redis_url(text)
    assert url is not None
    return url


# Appends its argument to a list and returns the list's length: order made visible.
APPEND = "return redis.call('RPUSH', 'batch-test', ARGV[1])"


@asynccontextmanager
async def batch(
    redis_server: RedisServer,
) -> AsyncIterator[tuple[ScriptBatch, coredis.Redis[bytes]]]:
    async with open_client(redis_url(redis_server.url), op_timeout=2.0) as client:
        runner = ScriptBatch(client, 2.0)
        async with trio.open_nursery() as nursery:
            await nursery.start(runner.run)
            yield runner, client
            nursery.cancel_scope.cancel()


async def test_concurrent_calls_each_get_their_own_reply_in_the_order_redis_ran_them(
    redis_server: RedisServer,
) -> None:
    async with batch(redis_server) as (runner, client):
        script = client.register_script(APPEND)
        replies: dict[int, int] = {}

        async def call(number: int) -> None:
            replies[number] = await runner.call(script, [number])

        async with trio.open_nursery() as nursery:
            for number in range(300):  # more than one pipeline holds
                nursery.start_soon(call, number)
        assert sorted(replies.values()) == list(range(1, 301))
        # Redis ran them in the order they were issued, and each caller got its own reply.
        stored = [int(item) for item in await client.lrange("batch-test", 0, -1)]
        assert stored == sorted(replies, key=replies.__getitem__)


async def test_a_redis_that_lost_its_scripts_runs_them_again_in_order(
    redis_server: RedisServer,
) -> None:
    async with batch(redis_server) as (runner, client):
        script = client.register_script(APPEND)
        assert await runner.call(script, ["first"]) == 1
        redis_server.cli("SCRIPT", "FLUSH")
        issued: list[bytes] = []

        async def call(word: bytes) -> None:
            issued.append(word)  # no checkpoint between this and joining the batch
            await runner.call(script, [word])

        async with trio.open_nursery() as nursery:
            for word in (b"a", b"b", b"c"):
                nursery.start_soon(call, word)
        assert await client.lrange("batch-test", 0, -1) == [b"first", *issued]


async def test_every_caller_hears_of_a_lost_connection(redis_server: RedisServer) -> None:
    async with batch(redis_server) as (runner, client):
        script = client.register_script(APPEND)
        await runner.call(script, ["warm"])
        redis_server.kill()
        failures: list[BaseException] = []

        async def call() -> None:
            try:
                await runner.call(script, ["lost"])
            except Exception as error:
                failures.append(error)

        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                for _ in range(5):
                    nursery.start_soon(call)
        assert len(failures) == 5
        with pytest.raises(Exception):  # noqa: B017 - any connection error will do
            await runner.call(script, ["still down"])
