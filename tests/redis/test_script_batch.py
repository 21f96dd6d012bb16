"""ScriptBatch on a real redis-server: replies reach their callers, in order, through restarts."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import coredis
import outcome
import pytest
import trio
import trio.lowlevel

from harness.redis import RedisServer
from tallow.broker.base import BrokerUnavailable
from tallow.broker.redis_batch import Command, ScriptBatch
from tallow.broker.redis_connect import node_for, open_client
from tallow.broker.redis_link import Endpoint
from tallow.broker.resp import ReplyError
from tallow.redis_url import RedisURL, parse_redis_url


def redis_url(text: str) -> RedisURL:
    url = parse_redis_url(text)
    assert url is not None
    return url


# Appends its argument to a list and returns the list's length: order made visible.
APPEND = "return redis.call('RPUSH', 'batch-test', ARGV[1])"

# Appends each of its arguments; one reply (the list's length after it) per argument, or an
# error for all of them if one is "bad": a script whose calls merge (one argument per call).
APPEND_EACH = """
local replies = {}
for i = 1, #ARGV do
  if ARGV[i] == 'bad' then return redis.error_reply('bad argument') end
  replies[#replies + 1] = redis.call('RPUSH', 'batch-test', ARGV[i])
end
return replies
"""


@asynccontextmanager
async def batch(
    redis_server: RedisServer,
) -> AsyncIterator[tuple[ScriptBatch, coredis.Redis[bytes]]]:
    url = redis_url(redis_server.url)
    async with open_client(url, op_timeout=2.0) as client:

        async def locate() -> Endpoint:
            return await node_for(url, client, "batch-test", 2.0)

        runner = ScriptBatch(locate, 2.0)
        async with trio.open_nursery() as nursery:
            await nursery.start(runner.run)
            yield runner, client
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize("merging", [False, True])
async def test_concurrent_calls_each_get_their_own_reply_in_the_order_redis_ran_them(
    redis_server: RedisServer, merging: bool
) -> None:
    """Merging: most calls are of a script that merges (Script.merges), every tenth of another,
    so the merged runs stop and start around it."""
    async with batch(redis_server) as (runner, client):
        alone = runner.register(APPEND)
        merges = runner.register(APPEND_EACH, merges=True)
        replies: dict[int, int] = {}

        async def call(number: int) -> None:
            script = merges if merging and number % 10 != 9 else alone
            replies[number] = await runner.call(script, [number])

        async with trio.open_nursery() as nursery:
            for number in range(300):  # more than one pipeline holds
                nursery.start_soon(call, number)
        assert sorted(replies.values()) == list(range(1, 301))
        # Redis ran them in the order they were issued, and each caller got its own reply.
        stored = [int(item) for item in await client.lrange("batch-test", 0, -1)]
        assert stored == sorted(replies, key=replies.__getitem__)
        if merging:  # 30 calls of the other script, each between two merged runs: about 60
            assert redis_server.calls("evalsha") <= 70


async def test_a_redis_that_lost_its_scripts_runs_them_again_in_order(
    redis_server: RedisServer,
) -> None:
    async with batch(redis_server) as (runner, client):
        script = runner.register(APPEND)
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
    async with batch(redis_server) as (runner, _):
        script = runner.register(APPEND)
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


async def test_a_pipeline_redis_does_not_answer_fails_within_the_bound(
    redis_server: RedisServer,
) -> None:
    """A Redis that stops answering (stopped, its sockets open) fails the pipeline in flight
    once the watchdog sees it overdue (timeout 2 s, checked every 0.5 s), not sooner; once
    Redis answers again the next call reconnects and runs."""
    assert redis_server.process is not None
    async with batch(redis_server) as (runner, client):
        script = runner.register(APPEND)
        await runner.call(script, ["before"])
        redis_server.process.send_signal(signal.SIGSTOP)
        try:
            started = trio.current_time()
            with trio.fail_after(10), pytest.raises(trio.ClosedResourceError):
                await runner.call(script, ["stalled"])
            waited = trio.current_time() - started
        finally:
            redis_server.process.send_signal(signal.SIGCONT)
        assert 2.0 <= waited <= 2.0 * 1.25 + 0.5, waited
        with trio.fail_after(5):
            await runner.call(script, ["after"])
        # Whether "stalled" ran once Redis woke is Redis' business (it was sent): the caller
        # was told it may not have.
        listed = await client.lrange("batch-test", 0, -1)
        assert listed[0] == b"before" and listed[-1] == b"after", listed


async def test_a_restarted_redis_gets_every_script_before_the_next_pipeline(
    redis_server: RedisServer,
) -> None:
    async with batch(redis_server) as (runner, client):
        first, second = runner.register(APPEND), runner.register(APPEND + " -- another script")
        await runner.call(first, ["warm"])
        redis_server.restart()  # empty, without scripts
        with pytest.raises(BrokerUnavailable):
            await runner.call(first, ["lost"])
        await runner.call(first, ["back"])  # had it been loaded alone, the second is not
        issued: list[bytes] = []

        async def call(script: Command, word: bytes) -> None:
            issued.append(word)  # no checkpoint between this and joining the batch
            await runner.call(script, [word])

        async with trio.open_nursery() as nursery:  # one pipeline, both scripts in it
            for script, word in ((second, b"a"), (first, b"b"), (second, b"c")):
                nursery.start_soon(call, script, word)
        assert await client.lrange("batch-test", 0, -1) == [b"back", *issued]
        # Loaded on the new connection: none of them had to be loaded and run again.
        assert "NOSCRIPT" not in redis_server.cli("INFO", "errorstats")


async def test_a_cancelled_caller_still_gets_its_reply(redis_server: RedisServer) -> None:
    async with batch(redis_server) as (runner, client):
        script = runner.register(APPEND)
        replies: list[int] = []
        with trio.CancelScope() as scope:
            scope.cancel()  # already cancelled when it calls: the script runs all the same
            replies.append(await runner.call(script, ["done"]))
            await trio.lowlevel.checkpoint()  # the cancellation lands here
        assert scope.cancelled_caught
        assert replies == [1]
        assert await client.lrange("batch-test", 0, -1) == [b"done"]


async def test_an_error_of_a_merged_run_reaches_each_of_its_calls(
    redis_server: RedisServer,
) -> None:
    async with batch(redis_server) as (runner, client):
        merging = runner.register(APPEND_EACH, merges=True)
        outcomes: dict[str, outcome.Outcome[object]] = {}
        for word in ("a", "bad", "c"):  # submitted without a checkpoint between: one run
            runner.submit(merging, [word], partial(outcomes.__setitem__, word))
        with trio.fail_after(5):
            while len(outcomes) < 3:
                await trio.sleep(0.01)
        for word in ("a", "bad", "c"):
            with pytest.raises(ReplyError, match="bad argument"):
                outcomes[word].unwrap()
        assert await client.lrange("batch-test", 0, -1) == [b"a"]  # the run stopped at "bad"
        assert await runner.call(merging, ["next"]) == 2  # the batch goes on


async def test_publishes_next_to_each_other_to_one_channel_go_as_one_message(
    redis_server: RedisServer,
) -> None:
    """A command that joins (Command.joins): consecutive PUBLISHes to one channel are one
    PUBLISH of their messages, a line each; another channel or command in between starts a new
    one; every call hears the one reply (the subscribers it reached)."""
    async with batch(redis_server) as (runner, client):
        joining = runner.command("PUBLISH", joins=True)
        script = runner.register(APPEND)
        async with client.pubsub(channels=["one", "two"]) as subscription:
            outcomes: list[outcome.Outcome[object]] = []
            calls = [
                (joining, ["one", b"a"]),
                (joining, ["one", b"b"]),
                (joining, ["two", b"c"]),
                (joining, ["one", b"d"]),
                (script, ["between"]),
                (joining, ["one", b"e"]),
                (joining, ["one", b"f"]),
            ]
            for command, args in calls:  # without a checkpoint between: one pipeline
                runner.submit(command, args, outcomes.append)
            with trio.fail_after(5):
                while len(outcomes) < len(calls):
                    await trio.sleep(0.01)
            assert [result.unwrap() for result in outcomes] == [1, 1, 1, 1, 1, 1, 1]
            messages = []
            with trio.fail_after(5):
                while len(messages) < 4:
                    message = await subscription.get_message(timeout=1)
                    if message and message["type"] == "message":
                        messages.append((message["channel"], message["data"]))
            assert messages == [
                (b"one", b"a\nb"),
                (b"two", b"c"),
                (b"one", b"d"),
                (b"one", b"e\nf"),
            ]
        assert redis_server.calls("publish") == 4
