"""Script calls issued in the same scheduler tick go to Redis as one pipeline: one write, one read.

Through coredis a lone EVALSHA costs about 0.23 ms of client CPU on a development machine, 50
per pipeline about 0.04 ms each (``bench/redis_fanout.py --script-cost``, docs/scaling.md).
Sessions call ``ScriptBatch.call`` as they would the script itself; the batch's task sends
whatever piled up while it was busy, in arrival order, on one connection, so calls one task
makes one after another still run in that order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import outcome
import trio
from coredis.commands.script import Script
from coredis.exceptions import NoScriptError

from tallow.broker.redis_connect import Client

MAX_BATCH = 256  # calls per pipeline; more wait for the next one


@attrs.define(eq=False)
class _Call:
    script: Script[bytes]
    args: Sequence[str | bytes | int]
    result: outcome.Outcome[Any] | None = None
    done: trio.Event = attrs.Factory(trio.Event)


class ScriptBatch:
    """Runs script calls in pipelines from its own task (``run``), one pipeline at a time."""

    def __init__(self, client: Client, timeout: float, route: Sequence[str] = ()) -> None:
        self._client = client
        self._timeout = timeout
        self._route = list(route)  # the keys every call declares: in a cluster, they pick the node
        self._waiting: list[_Call] = []
        self._wake = trio.Event()

    async def call(self, script: Script[bytes], args: Sequence[str | bytes | int]) -> Any:
        """The script's reply, or what it raised; every call ends within two pipelines' time."""
        request = _Call(script, args)
        self._waiting.append(request)
        self._wake.set()
        await request.done.wait()
        assert request.result is not None
        return request.result.unwrap()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            while self._waiting:
                batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
                try:
                    await self._send(batch)
                finally:
                    for request in batch:  # also on cancellation: nobody waits forever
                        if request.result is None:
                            request.result = outcome.Error(trio.TooSlowError())
                        request.done.set()

    async def _send(self, batch: list[_Call]) -> None:
        try:
            with trio.fail_after(self._timeout):
                async with self._client.pipeline(transaction=False, raise_on_error=False) as pipe:
                    replies = [
                        pipe.evalsha(request.script.sha, keys=self._route, args=request.args)
                        for request in batch
                    ]
        except Exception as error:  # the connection failed: every call in it did
            for request in batch:
                request.result = outcome.Error(error)
            return
        for request, reply in zip(batch, replies, strict=True):
            request.result = await outcome.acapture(_await, reply)
            if isinstance(request.result, outcome.Error) and isinstance(
                request.result.error, NoScriptError
            ):
                # Redis restarted empty: the script object loads it and runs it again. Later
                # calls of this batch failed the same way and run again after it, in order.
                request.result = await outcome.acapture(self._alone, request)

    async def _alone(self, request: _Call) -> Any:
        with trio.fail_after(self._timeout):
            return await request.script(keys=self._route, args=request.args)


async def _await(reply: Any) -> Any:
    return await reply
