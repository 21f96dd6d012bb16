"""Faults under load, with replicas sharing a real Redis: a replica SIGKILLed mid-handshake,
Redis restarted, a Sentinel failover, and a replica drained by SIGTERM. Every signal a sender
wrote is accounted for: delivered (once, in order), or answered with an error."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from trio_websocket import ConnectionClosed

from harness.client import Client, connect
from harness.redis import RedisServer, eventually
from tests.hostile.conftest import tried
from tests.redis.test_sentinel import sentinel_setup  # noqa: F401  (the shared fixture)

HOLD = 2.0  # seconds of steady load before a fault and after recovery
INTERVAL = 0.05  # seconds between one sender's signals (20/s; the default limit is 50/s)


@pytest.fixture
def redis(tmp_path: Path):
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.kill()


@attrs.define
class Stream:
    """One sender signalling one receiver, numbered; who got what."""

    sender: Client
    receiver: Client
    sent: list[int] = attrs.Factory(list)
    errored: set[int] = attrs.Factory(set)
    interrupted: list[int] = attrs.Factory(list)  # signals sent when each peer-interrupted came
    received: list[int] = attrs.Factory(list)
    sent_at: list[float] = attrs.Factory(list)  # trio clock at each signal's send, by number
    # When the newest signal that arrived was sent: signals sent before a fault and still
    # landing after it must not count as recovery (a slow server has many in flight).
    last_seen_sent_at: float = 0.0

    async def send_forever(self) -> None:
        number = 0
        while True:
            self.sent_at.append(trio.current_time())
            await self.sender.send(
                {"type": "signal", "to": self.receiver.peer, "data": number, "id": number}
            )
            self.sent.append(number)
            number += 1
            await trio.sleep(INTERVAL)

    async def read_errors(self) -> None:
        while True:
            reply = await self.sender.recv(timeout=600)
            if reply["type"] == "error":
                self.errored.add(reply["re"])
            elif reply["type"] == "peer-interrupted" and reply["peer"] == self.receiver.peer:
                self.interrupted.append(len(self.sent))

    async def receive(self, client: Client) -> int | None:
        """Record signals until the connection closes; its close code."""
        try:
            while True:
                message = await client.recv(timeout=600)
                if message["type"] == "signal":
                    self.received.append(message["data"])
                    self.last_seen_sent_at = self.sent_at[message["data"]]
        except ConnectionClosed as closed:
            return closed.reason.code

    async def resume(
        self, url: str, *, task_status: trio.TaskStatus[Client] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Reconnect the receiver with its resume token and receive there until cancelled."""
        async with connect(url, resume=self.receiver.resume) as again:
            assert again.welcome.get("resumed") is True
            self.receiver = again
            task_status.started(again)
            await self.receive(again)

    def check(self) -> int:
        """Delivered in order, at most once; everything sent arrived, got an error or was sent
        before a peer-interrupted notice. Returns the number of signals lost silently."""
        assert self.received == sorted(set(self.received)), "reordered or duplicated"
        missing = set(self.sent) - set(self.received) - self.errored
        tried("signals sent under faults", len(self.sent))
        told_until = max(self.interrupted, default=0)  # signals before it may be lost: told
        return len({number for number in missing if number >= told_until})


async def open_streams(
    stack: AsyncExitStack, sender_url: str, receiver_url: str, count: int, room: str
) -> list[Stream]:
    streams = []
    for number in range(count):
        sender = await stack.enter_async_context(connect(sender_url))
        receiver = await stack.enter_async_context(connect(receiver_url))
        await sender.join(f"{room}-{number}"), await receiver.join(f"{room}-{number}")
        assert (await sender.recv())["type"] == "peer-joined"
        streams.append(Stream(sender, receiver))
    return streams


async def wait_flowing(streams: list[Stream], since: float, timeout: float) -> float:
    """Seconds from ``since`` until every stream has delivered a signal sent after it."""
    with trio.fail_after(timeout):
        while not all(stream.last_seen_sent_at > since for stream in streams):
            await trio.sleep(0.05)
    return trio.current_time() - since


@attrs.define
class Load:
    """Streams running in a nursery: ``stop()`` ends the senders, lets what is in flight land,
    then ends the readers."""

    streams: list[Stream]
    readers: trio.Nursery
    senders: trio.Nursery

    @classmethod
    @asynccontextmanager
    async def running(cls, streams: list[Stream]) -> AsyncIterator[Load]:
        async with trio.open_nursery() as readers:
            for stream in streams:
                readers.start_soon(stream.read_errors)
            async with trio.open_nursery() as senders:
                for stream in streams:
                    senders.start_soon(stream.send_forever)
                yield cls(streams, readers, senders)
                senders.cancel_scope.cancel()
            await trio.sleep(2)  # what was sent last arrives
            readers.cancel_scope.cancel()


async def outage_under_load(urls: tuple[str, str], fault: Any, recovered: Any) -> float:
    """Four streams between two replicas; ``fault()`` breaks Redis; seconds until every stream
    delivers again; asserts nothing was lost silently."""
    async with AsyncExitStack() as stack:
        streams = await open_streams(stack, *urls, 4, "outage")
        async with Load.running(streams) as load:
            for stream in streams:
                load.readers.start_soon(stream.receive, stream.receiver)
            await wait_flowing(streams, trio.current_time(), 10)
            await trio.sleep(HOLD)
            started = trio.current_time()
            await trio.to_thread.run_sync(fault)
            recovery = await wait_flowing(streams, started, 60)
            await trio.to_thread.run_sync(recovered)
            await trio.sleep(HOLD)
    lost = [stream.check() for stream in streams]
    errors = sum(len(stream.errored) for stream in streams)
    sent = sum(len(stream.sent) for stream in streams)
    print(f"recovery {recovery:.2f} s; {sent} sent, {errors} errors, lost silently {lost}")
    assert lost == [0, 0, 0, 0]
    return recovery


async def test_redis_restart_under_load_loses_nothing_silently(start_tallow, redis) -> None:
    env = {"REDIS_URL": redis.url, "TALLOW_RESUME_SECONDS": "10"}
    one, two = start_tallow(env=env), start_tallow(env=env)

    def restart() -> None:
        redis.restart(down_for=1.0)

    recovery = await outage_under_load((one.ws_url, two.ws_url), restart, lambda: None)
    assert recovery < 20
    assert one.process.poll() is None and two.process.poll() is None


async def test_sentinel_failover_under_load_loses_nothing_silently(
    start_tallow,
    sentinel_setup,  # noqa: F811
) -> None:
    primary, standby, watchers = sentinel_setup
    await eventually(lambda: "slave0" in primary.cli("INFO", "replication"), 10)
    await eventually(lambda: all(w.primary_port_now() == primary.port for w in watchers), 10)
    hosts = ",".join(f"127.0.0.1:{watcher.port}" for watcher in watchers)
    env = {"REDIS_URL": f"redis+sentinel://{hosts}/tallow", "TALLOW_RESUME_SECONDS": "30"}
    one, two = start_tallow(env=env), start_tallow(env=env)

    def promoted() -> None:
        # The sentinel that led the failover knows at once; the others learn it by gossip
        # a moment later, which a loaded machine can stretch past the streams' recovery.
        assert any(watcher.primary_port_now() == standby.port for watcher in watchers)

    recovery = await outage_under_load((one.ws_url, two.ws_url), primary.kill, promoted)
    assert recovery < 40


async def test_sigkill_mid_handshake_peer_resumes_on_another_replica(start_tallow, redis) -> None:
    """Alice (replica one) streams ICE candidates at Bob (replica two); two is SIGKILLed. Bob
    resumes on one within the grace period; everything Alice sent from the moment Bob saw his
    connection die reaches him, in order, at once. Frames two held in memory at the kill die
    with it, and Alice is told so (peer-interrupted): nothing is lost silently."""
    grace = 10.0
    env = {"REDIS_URL": redis.url, "TALLOW_RESUME_SECONDS": str(grace)}
    one, two = start_tallow(env=env), start_tallow(env=env)
    async with AsyncExitStack() as stack:
        (stream,) = await open_streams(stack, one.ws_url, two.ws_url, 1, "handshake")
        bob = stream.receiver
        await stream.sender.send({"type": "signal", "to": bob.peer, "data": "offer"})
        assert (await bob.recv())["data"] == "offer"
        await bob.send({"type": "signal", "to": stream.sender.peer, "data": "answer"})
        assert (await stream.sender.recv())["data"] == "answer"
        async with Load.running([stream]) as load:
            await trio.sleep(HOLD)
            killed = trio.current_time()
            two.process.kill()
            await stream.receive(bob)
            noticed = len(stream.sent)
            # Open in the readers' nursery: it stays open until what was in flight has landed.
            again = await load.readers.start(stream.resume, one.ws_url)
            resumed = trio.current_time() - killed
            assert again.peer == bob.peer and again.welcome["room"] == "HANDSHAKE-0"
            mark = len(stream.sent)  # caught up once the signal sent now has arrived
            with trio.fail_after(25):
                while not stream.received or stream.received[-1] < mark:
                    await trio.sleep(0.02)
            flowing = trio.current_time() - killed
            await trio.sleep(HOLD)
            await again.send({"type": "signal", "to": stream.sender.peer, "data": "back"})
    silent = stream.check()
    after_notice = set(stream.sent[noticed:]) - set(stream.received) - stream.errored
    in_flight = len(set(stream.sent) - set(stream.received) - stream.errored)
    print(
        f"SIGKILL: resumed after {resumed:.2f} s, caught up after {flowing:.2f} s; "
        f"{len(stream.sent)} sent, lost in flight {in_flight}, told after {stream.interrupted}"
    )
    assert resumed < grace
    assert after_notice == set()
    # The kill's window: frames replica two had taken from Redis but not yet written (0-7 at
    # 20 signals/s here). Alice hears peer-interrupted once, after them: none lost silently.
    assert len(stream.interrupted) == 1 and silent == 0


async def test_sigterm_under_load_loses_no_accepted_signal(start_tallow, redis) -> None:
    """Receivers on replica one, senders on replica two; one is drained with SIGTERM. Every
    receiver gets 1001, resumes on two, and gets every signal its sender wrote that was not
    answered with an error: the drained replica hands its unsent frames over through Redis."""
    env = {"REDIS_URL": redis.url, "TALLOW_RESUME_SECONDS": "10", "TALLOW_DRAIN_SECONDS": "5"}
    one, two = start_tallow(env=env), start_tallow(env=env)
    codes: list[int | None] = []

    async def receive_then_resume(stream: Stream) -> None:
        codes.append(await stream.receive(stream.receiver))
        await stream.resume(two.ws_url)

    async with AsyncExitStack() as stack:
        streams = await open_streams(stack, two.ws_url, one.ws_url, 4, "drain")
        async with Load.running(streams) as load:
            for stream in streams:
                load.readers.start_soon(receive_then_resume, stream)
            await trio.sleep(HOLD)
            drained = trio.current_time()
            one.process.send_signal(signal.SIGTERM)
            recovery = await wait_flowing(streams, drained, 30)
            await trio.sleep(HOLD)
    # Exits within the drain; its exit code is not asserted here: with the Redis broker it is
    # sometimes 1 from a pubsub teardown error (reported in docs/reliability.md, open).
    exit_code = await trio.to_thread.run_sync(one.process.wait, 15)
    assert codes == [1001] * 4
    lost = [stream.check() for stream in streams]
    sent = sum(len(stream.sent) for stream in streams)
    print(
        f"SIGTERM: flowing again after {recovery:.2f} s; {sent} sent, lost {lost}, exit {exit_code}"
    )
    assert lost == [0, 0, 0, 0]
