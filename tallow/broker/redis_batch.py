"""Script calls issued in the same scheduler tick go to Redis as one pipeline: one write, one read,
on a connection of the batch's own (``redis_link``) with the commands encoded straight to RESP.
A plain command (``ScriptBatch.command``: PUBLISH) takes its place among them the same way.

Through coredis a pipelined EVALSHA cost about 0.04 ms of client CPU at 50 per pipeline (its
command objects, response futures, writer and reader tasks); written as bytes and parsed in one
pass, 0.01 ms (``bench/redis_fanout.py --script-cost``, docs/scaling.md). Sessions call
``ScriptBatch.call`` as they would the script itself; the batch's task sends whatever piled up
while it was busy, in arrival order, so calls one task makes one after another run in that order.

A call cannot be cancelled once issued: its script runs anyway, and the caller must see what it
did (a join whose announcement went out). The batch bounds it instead: a pipeline Redis has not
answered within ``timeout`` (checked ``WATCHES`` times per ``timeout``, so at most a quarter
more) has its connection closed under it by the batch's watchdog task, and its calls fail. A
cancel scope of its own per pipeline did the same at a far higher price: with a deadline
registered and removed each time, it cost 2.6 us of CPU per signal at 20 signals per pipeline
(``bench/redis_fanout.py --broker-path``, docs/performance.md). The connection is
made on first use (within ``timeout``), to the node ``locate`` names, and again after any
failure (Redis restarted, a failover moved the primary); every registered script is loaded on
it first, so a Redis that restarted empty does not answer NOSCRIPT to half a pipeline (a
``SCRIPT FLUSH`` meanwhile is still survived: such a call is loaded and run again, alone).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

import attrs
import outcome
import trio

from tallow.broker.base import BrokerUnavailable
from tallow.broker.redis_link import Endpoint, Link, connect
from tallow.broker.resp import Reply, ReplyError, as_bytes, bulk, encode

MAX_BATCH = 256  # calls per pipeline; more wait for the next one
WATCHES = 4  # the watchdog's checks per timeout (module docstring)
# Error replies that mean "not here, not now" (a failover, a slot moving, Redis starting):
# the connection is made again, to wherever ``locate`` says, and the callers hear of an outage.
_UNAVAILABLE = ("READONLY", "MOVED", "ASK", "CLUSTERDOWN", "TRYAGAIN", "LOADING", "MASTERDOWN")


@attrs.frozen
class Command:
    """A script (``ScriptBatch.register``) or a plain command (``ScriptBatch.command``)."""

    body: str  # the script's source; '' for a plain command
    sha: str
    # EVALSHA, its sha, the keys and the leading arguments (or the command's name), encoded once
    head: bytes
    arity: int  # how many arguments the head holds
    # Calls of it next to each other in a pipeline run as one EVALSHA, their arguments one
    # after another; the script answers with one reply per call, in a list.
    merges: bool = False
    # Calls of it next to each other with the same first argument (a PUBLISH's channel) go as
    # one command, their last arguments joined by newlines; each call gets its one reply.
    joins: bool = False


# What a submitted call's result goes to, in the batch's task: it must not raise or wait.
Done = Callable[[outcome.Outcome[Any]], object]


@attrs.define(eq=False)
class _Call:
    script: Command
    args: Sequence[str | bytes | int]
    done: Done  # the awaiting task's reschedule, or the submitter's callback
    result: outcome.Outcome[Any] | None = None


class ScriptBatch:
    """Runs script calls in pipelines from its own task (``run``), one pipeline at a time; once
    that task has ended (shutdown), each call goes alone, in its caller's task."""

    def __init__(
        self,
        locate: Callable[[], Awaitable[Endpoint]],
        timeout: float,
        route: Sequence[str] = (),
        context: Sequence[str | int] = (),
    ) -> None:
        """``route``: the keys every call declares (a cluster routes by them); ``context``: the
        arguments every call starts with."""
        self._locate = locate
        self._timeout = timeout
        self._lead: list[str | bytes | int] = [len(route), *route, *context]
        self._scripts: dict[str, Command] = {}  # sha -> script: loaded on each new connection
        self._link: Link | None = None
        self._due = math.inf  # when the pipeline in flight must have been answered
        self._waiting: list[_Call] = []
        self._wake = trio.Event()
        self._stopped = False  # run() has ended
        self._alone = trio.Lock()  # after that, one call at a time on the connection

    def register(self, body: str, *, merges: bool = False) -> Command:
        """A script for ``call`` and ``submit``. ``merges``: its calls next to each other in a
        pipeline may run as one (``Command.merges``): Redis' fixed cost of a script run, the
        head's bytes and the context's arguments come once for all of them."""
        sha = hashlib.sha1(body.encode()).hexdigest()
        lead = ["EVALSHA", sha, *self._lead]
        script = Command(body, sha, bulk(lead), len(lead), merges)
        self._scripts[script.sha] = script
        return script

    def command(self, name: str, *, joins: bool = False) -> Command:
        """A plain command for ``submit``, such as PUBLISH: its arguments follow its name.
        ``joins``: see ``Command.joins`` (one PUBLISH of several one-line messages)."""
        return Command("", "", bulk([name]), 1, joins=joins)

    async def call(self, script: Command, args: Sequence[str | bytes | int]) -> Any:
        """The script's reply, or what it raised: ReplyError for an error of the script itself,
        BrokerUnavailable or an OSError for Redis out of reach."""
        request = _Call(
            script, args, partial(trio.lowlevel.reschedule, trio.lowlevel.current_task())
        )
        if self._stopped:  # no watchdog any more: a scope bounds it (rare: shutdown)
            async with self._alone:
                with trio.fail_after(self._timeout):
                    await self._send([request])
            assert request.result is not None
            return request.result.unwrap()
        self._queue(request)
        return await trio.lowlevel.wait_task_rescheduled(_not_cancellable)

    def submit(self, script: Command, args: Sequence[str | bytes | int], done: Done) -> None:
        """Queue a call; its result (as ``call`` would return or raise it) goes to ``done``.
        Raises BrokerUnavailable once the batch's task has ended: nothing would send it."""
        if self._stopped:
            raise BrokerUnavailable("script batch stopped")
        self._queue(_Call(script, args, done))

    def _queue(self, request: _Call) -> None:
        self._waiting.append(request)
        self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Send what piles up, one pipeline at a time, beside the watchdog, until cancelled."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch)
                task_status.started()
                while True:
                    await self._wake.wait()
                    self._wake = trio.Event()
                    while self._waiting:
                        batch = self._waiting[:MAX_BATCH]
                        self._waiting = self._waiting[MAX_BATCH:]
                        try:
                            await self._send(batch)
                        finally:
                            _answer(batch)  # also on cancellation: nobody waits forever
        finally:
            self._stopped = True
            _answer(self._waiting)
            self._waiting = []

    async def _watch(self) -> None:
        """Close the connection under a pipeline that was not answered in time."""
        while True:
            await trio.sleep(self._timeout / WATCHES)
            if trio.current_time() > self._due and self._link is not None:
                self._link.abort()  # the pipeline's read fails at once; its calls hear of it

    async def _send(self, batch: list[_Call]) -> None:
        commands = _merged(batch)
        data = b"".join([self._encoded(calls) for calls in commands])
        try:
            replies = await self._exchange(data, len(commands))
        except Exception as error:  # the connection failed: every call in it did
            for request in batch:
                request.result = outcome.Error(error)
            return
        for calls, reply in zip(commands, replies, strict=True):
            if not isinstance(reply, ReplyError):
                result: outcome.Outcome[Any] = outcome.Value(reply)
            elif str(reply).startswith("NOSCRIPT"):
                # Flushed meanwhile: load it and run it again. Later calls of this batch that
                # failed the same way run again after it, in order.
                result = await outcome.acapture(self._load_and_run, calls)
            else:
                result = await self._result(reply)
            _settle(calls, result)

    async def _load_and_run(self, calls: list[_Call]) -> Any:
        load = encode("SCRIPT", "LOAD", calls[0].script.body)
        _, reply = await self._exchange(load + self._encoded(calls), 2)
        return (await self._result(reply)).unwrap()

    async def _exchange(self, data: bytes, count: int) -> list[Reply]:
        """Write ``data``, read ``count`` replies, watched (module docstring)."""
        try:
            link = await self._connected()
            self._due = trio.current_time() + self._timeout
            try:
                await link.send(data)
                return await link.replies(count)
            finally:
                self._due = math.inf
        except BaseException:
            # Replies may be left unread, or half written: the connection is never used again.
            with trio.CancelScope(shield=True):
                await self._drop()
            raise

    async def _result(self, reply: Any) -> outcome.Outcome[Any]:
        if not isinstance(reply, ReplyError):
            return outcome.Value(reply)
        if str(reply).startswith(_UNAVAILABLE):
            await self._drop()
            return outcome.Error(BrokerUnavailable(str(reply)))
        return outcome.Error(reply)

    def _encoded(self, calls: list[_Call]) -> bytes:
        """One command for ``calls``: one call, or several of a script that merges (one EVALSHA)
        or of a command that joins."""
        script = calls[0].script
        arguments = [request.args for request in calls]
        if script.joins and len(calls) > 1:
            *lead, _ = calls[0].args
            arguments = [[*lead, b"\n".join([as_bytes(args[-1]) for args in arguments])]]
        count = sum(len(args) for args in arguments)
        parts = [bulk(args) for args in arguments]
        return b"*%d\r\n" % (script.arity + count) + script.head + b"".join(parts)

    async def _connected(self) -> Link:
        if self._link is None:
            with trio.fail_after(self._timeout):  # once per connection: a scope is cheap here
                endpoint = await self._locate()
                link = await connect(endpoint)
                try:
                    scripts = self._scripts.values()
                    loads = [encode("SCRIPT", "LOAD", script.body) for script in scripts]
                    await link.log_in(endpoint, *loads)
                except BaseException:
                    await link.aclose()
                    raise
            self._link = link
        return self._link

    async def aclose(self) -> None:
        """Close the connection (after the last call)."""
        await self._drop()

    async def _drop(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            await link.aclose()


def _merged(batch: list[_Call]) -> list[list[_Call]]:
    """The calls each command of the pipeline carries, in order."""
    commands: list[list[_Call]] = []
    for request in batch:
        script, first = request.script, commands[-1][0] if commands else None
        if (
            first is not None
            and first.script is script
            and (script.merges or (script.joins and first.args[0] == request.args[0]))
        ):
            commands[-1].append(request)
        else:
            commands.append([request])
    return commands


def _settle(calls: list[_Call], result: outcome.Outcome[Any]) -> None:
    """Each call's share of its command's result: its own reply of a merged script's list."""
    if isinstance(result, outcome.Error):
        for request in calls:  # an outcome is unwrapped once: one each
            request.result = outcome.Error(result.error)
        return
    if not calls[0].script.merges:  # one call, or calls joined into one command: its reply
        reply = result.unwrap()
        for request in calls:
            request.result = outcome.Value(reply)
        return
    replies = result.unwrap()
    for request, reply in zip(calls, replies, strict=True):
        request.result = outcome.Value(reply)


def _not_cancellable(_: Any) -> trio.lowlevel.Abort:
    return trio.lowlevel.Abort.FAILED


def _answer(batch: list[_Call]) -> None:
    for request in batch:
        request.done(request.result or outcome.Error(BrokerUnavailable("script batch stopped")))
