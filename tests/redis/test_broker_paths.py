"""The Redis broker in process, on a real redis-server: local fast path, order across a resume.

Two RedisBroker objects in one process stand for two replicas; their sessions are plain inboxes,
so each test sees exactly which frame reached which connection, and in which order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import trio
import trio.lowlevel

from harness.redis import RedisServer, eventually
from tallow.broker import Delivery, Member, RoomFull
from tallow.broker.redis import RedisBroker
from tallow.broker.redis_link import Endpoint
from tallow.broker.redis_pubsub import Subscription, subscribe
from tallow.config import load
from tests.delivery import deliver, deliver_all
from tests.unit.test_memory_broker import Inbox


class Connection(Inbox):
    """An inbox whose frames offered after a supersede were never written (the session's case)."""

    def __init__(self) -> None:
        super().__init__(capacity=10_000)
        self.unsent: list[bytes] = []

    def offer(self, frame: bytes) -> bool:
        if self.superseded:
            self.unsent.append(frame)
            return True
        return super().offer(frame)


@asynccontextmanager
async def replicas(
    redis_server: RedisServer, count: int, resume_seconds: int = 5
) -> AsyncIterator[list[RedisBroker]]:
    settings = load({"REDIS_URL": redis_server.url, "TALLOW_RESUME_SECONDS": str(resume_seconds)})
    brokers = [RedisBroker(settings) for _ in range(count)]
    async with trio.open_nursery() as nursery:
        for broker in brokers:
            await nursery.start(broker.run)
        yield brokers
        nursery.cancel_scope.cancel()


async def joined(broker: RedisBroker, peer: str, room: str = "R") -> Connection:
    inbox = Connection()
    await broker.attach(peer, f"hash-{peer}", inbox)
    await broker.join(room, Member(peer, peer, {}), 10, announce=b"+" + peer.encode())
    return inbox


async def test_join_announces_to_the_listed_members_atomically(redis_server: RedisServer) -> None:
    async with replicas(redis_server, 2) as (one, two):
        a = await joined(one, "a")
        assert a.frames == []  # nobody was there when a joined
        b = await joined(two, "b")
        await eventually(lambda: a.frames == [b"+b"], 5)
        c = Connection()
        await one.attach("c", "hash-c", c)
        with pytest.raises(RoomFull):
            await one.join("R", Member("c", "c", {}), 2, announce=b"+c")
        await trio.sleep(0.2)
        assert a.frames == [b"+b"] and b.frames == []  # a full room announces nothing


async def resume_while_sending(
    send_all: Callable[[], Awaitable[None]],
    source: tuple[RedisBroker, Connection],
    target: tuple[RedisBroker, Connection],
    total: Callable[[], int],
) -> None:
    """Run ``send_all``; once b's connection on the source replica has 100 frames, b resumes on
    the target replica through the target connection; return once ``total()`` frames are in."""
    (old_replica, old), (new_replica, new) = source, target

    async def resume_midway() -> None:
        await eventually(lambda: len(old.frames) >= 100, 10, step=0.001)
        claim = await new_replica.claim("hash-b")
        assert claim is not None and claim.room == "R"
        async with trio.open_nursery() as nursery:
            nursery.start_soon(new_replica.attach, "b", "hash-b2", new)
            await eventually(lambda: old.superseded, 5, step=0.001)
            await old_replica.detach("b", old, old.unsent)

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_all)
            nursery.start_soon(resume_midway)
        await eventually(lambda: len(old.frames) + len(new.frames) >= total(), 10)


async def test_same_replica_signals_skip_redis_once_settled(redis_server: RedisServer) -> None:
    async with replicas(redis_server, 1) as (one,):
        a = await joined(one, "a")
        b = await joined(one, "b")
        # a's join announcement went to nobody, b's reached a through Redis (an echo): b is
        # settled at once, a once the echo is back.
        assert await deliver(one, "R", "b", b"first") is Delivery.DELIVERED
        assert b.frames == [b"first"]
        await eventually(lambda: one._local["a"].settled, 5)
        before = redis_server.calls("evalsha")
        for number in range(200):
            assert await deliver(one, "R", "b", b"%d" % number) is Delivery.DELIVERED
        assert redis_server.calls("evalsha") - before <= 2  # a heartbeat may fall in between
        assert b.frames == [b"first", *(b"%d" % number for number in range(200))]
        await eventually(lambda: a.frames == [b"+b"], 5)
        # Delivery does not need Redis at all: it keeps working while Redis is down.
        redis_server.kill()
        assert await deliver(one, "R", "b", b"no redis") is Delivery.DELIVERED
        assert b.frames[-1] == b"no redis"


async def test_order_holds_while_the_receiver_resumes_onto_the_senders_replica(
    redis_server: RedisServer,
) -> None:
    """Frames cross replicas, wait in a hand-over, then take the fast path: none overtakes."""
    async with replicas(redis_server, 2) as (one, two):
        await joined(one, "a")
        old = await joined(two, "b")
        sent = [b"%d" % number for number in range(400)]
        new = Connection()

        async def send_all() -> None:
            for frame in sent:
                assert await deliver(one, "R", "b", frame) is not Delivery.NOT_FOUND
                await trio.lowlevel.checkpoint()

        await resume_while_sending(send_all, (two, old), (one, new), lambda: len(sent))
        assert old.frames + new.frames == sent
        # Once settled on the sender's replica, the rest went without Redis.
        await eventually(lambda: one._local["b"].settled, 5)
        before = redis_server.calls("evalsha")
        await deliver(one, "R", "b", b"last")
        assert redis_server.calls("evalsha") - before <= 1
        assert new.frames[-1] == b"last"


async def test_signals_across_replicas_go_on_a_route_after_the_first(
    redis_server: RedisServer,
) -> None:
    """The script that delivers the first frame names the receiver's replica; the next frames
    are bare PUBLISHes to it (joined when next to each other), in order."""
    async with replicas(redis_server, 2) as (one, two):
        await joined(one, "a")
        b = await joined(two, "b")
        assert await deliver(one, "R", "b", b"first") is Delivery.DELIVERED
        assert one._routes == {"b": two._node}
        scripts, publishes = redis_server.calls("evalsha"), redis_server.calls("publish")
        sent = [b"%d" % number for number in range(200)]
        assert await deliver_all(one, "R", "b", sent) == [Delivery.DELIVERED] * len(sent)
        await eventually(lambda: len(b.frames) == 1 + len(sent), 5)
        assert b.frames == [b"first", *sent]
        assert redis_server.calls("evalsha") - scripts <= 4  # heartbeats may fall in between
        # Sent in one tick: one pipeline, and the frames for one replica joined into one PUBLISH.
        assert 1 <= redis_server.calls("publish") - publishes <= 4


async def test_routed_frames_keep_their_place_when_the_receiver_moves(
    redis_server: RedisServer,
) -> None:
    """a's frames to b go on a route, with broadcasts between them; b resumes on a third replica
    midway: its old replica's release waits for the route holder's answer, so no frame is lost,
    doubled or overtaken."""
    async with replicas(redis_server, 3) as (one, two, three):
        await joined(one, "a")
        old, new = await joined(two, "b"), Connection()
        assert await deliver(one, "R", "b", b"route") is Delivery.DELIVERED
        sent: list[bytes] = []

        async def send_all() -> None:
            after_move = 0
            while after_move < 200:  # and 200 more once the move began, however fast this runs
                frame = b"%d" % len(sent)
                sent.append(frame)
                if len(sent) % 5 == 0:
                    await one.publish("R", frame, exclude="a")
                else:
                    assert await deliver(one, "R", "b", frame) is not Delivery.NOT_FOUND
                after_move += old.superseded
                await trio.lowlevel.checkpoint()

        await resume_while_sending(send_all, (two, old), (three, new), lambda: 1 + len(sent))
        assert old.frames + new.frames == [b"route", *sent]
        assert new.frames  # the move happened while frames were still coming


async def test_a_resync_while_a_leave_is_out_does_not_put_the_peer_back(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resync (after an outage, or at start) issued while a leave's script is still out writes
    the rooms this replica holds, after the leave in Redis: the leaving peer is not among them."""
    async with replicas(redis_server, 1) as (one,):
        await joined(one, "b")
        script, ran, read = one._script, trio.Event(), trio.Event()

        async def late(name: str, *args: str | bytes | int) -> object:
            result = await script(name, *args)
            if name == "leave":  # it ran in Redis; its reply is read only later
                ran.set()
                await read.wait()
            return result

        monkeypatch.setattr(one, "_script", late)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(one.leave, "R", "b")
            await ran.wait()
            await one._resync()
            read.set()
        assert redis_server.cli("HKEYS", "tallow:room:R") == ""
        assert redis_server.cli("HGET", "tallow:peer:b", "room") == ""
        assert one.counts() == (0, 1)


async def test_a_peer_leaving_its_room_ends_routes_and_a_late_routed_frame_is_refused(
    redis_server: RedisServer,
) -> None:
    """b's leave tells the route holders (x): the next signal takes the script, refused at once.
    A frame sent on a route learnt just then reaches b's replica, which refuses it there: the
    sender's session hears, with the signal's id."""
    async with replicas(redis_server, 2) as (one, two):
        a = await joined(one, "a")
        b = await joined(two, "b")
        assert await deliver(one, "R", "b", b"first") is Delivery.DELIVERED
        assert one._routes == {"b": two._node}
        await two.leave("R", "b")
        await eventually(lambda: "b" not in one._routes, 5)
        assert await deliver(one, "R", "b", b"again", ("a", 6)) is Delivery.NOT_FOUND
        one._routes["b"] = two._node  # as if learnt in the instant b left
        assert await deliver(one, "R", "b", b"late", ("a", 7)) is Delivery.DELIVERED
        await eventually(lambda: a.refusals == [(Delivery.NOT_FOUND, 7)], 5)
        await eventually(lambda: "b" not in one._routes, 5)  # b's replica said so (x)
        assert b.frames == [b"first"]


async def test_a_route_nobody_listens_on_falls_back_to_the_script(
    redis_server: RedisServer,
) -> None:
    """A route to a replica that no longer listens (dead, not yet noticed): each frame's PUBLISH
    reaches nobody, so it goes through the script instead, in order, which finds the peer."""
    async with replicas(redis_server, 2) as (one, two):
        await joined(one, "a")
        b = await joined(two, "b")
        one._routes["b"] = "a-replica-gone"
        sent = [b"%d" % number for number in range(50)]
        for frame in sent:
            assert await deliver(one, "R", "b", frame) is Delivery.DELIVERED
        await eventually(lambda: len(b.frames) == len(sent), 5)
        assert b.frames == sent
        assert one._routes == {"b": two._node}  # learnt again from the script's reply


@asynccontextmanager
async def attach_read_late(
    broker: RedisBroker, peer: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Connection]:
    """Attach ``peer`` (a resume) whose script runs in Redis at once but whose reply the broker
    reads only when the block ends (what the channel brings meanwhile is read first); yields its
    connection; the attach has finished after the block."""
    script, ran, read, new = broker._script, trio.Event(), trio.Event(), Connection()

    async def late(name: str, *args: str | bytes | int) -> object:
        result = await script(name, *args)
        if name == "attach":
            ran.set()
            await read.wait()
        return result

    monkeypatch.setattr(broker, "_script", late)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(broker.attach, peer, f"hash-{peer}-resumed", new)
        await ran.wait()
        yield new
        read.set()


async def test_frames_that_overtake_the_attach_reply_wait_behind_its_queue(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The attach script's reply (older frames, from the peer's queue) and the channel (newer
    ones) come over different connections: whichever is read first, the older go first."""
    async with replicas(redis_server, 2) as (one, two):
        await joined(one, "a")
        await two.detach("b", await joined(two, "b"), [])  # away: frames to b wait in its queue
        assert await deliver(one, "R", "b", b"first") is Delivery.QUEUED
        assert await two.claim("hash-b") is not None
        async with attach_read_late(two, "b", monkeypatch) as new:
            assert await deliver(one, "R", "b", b"second") is Delivery.DELIVERED
            # Two's subscription has read "second" before the attach's reply is read.
            await eventually(lambda: new.frames or two._local["b"].early, 5, step=0.01)
        assert new.frames == [b"first", b"second"]


async def test_a_hold_that_ends_before_the_attach_reply_is_read_ends(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The end of a hand-over's hold (u) can be read before the reply of the attach that found
    the hold: the peer still settles and takes the local fast path."""
    async with replicas(redis_server, 2) as (one, two):
        await joined(one, "a")
        old = await joined(two, "b")
        assert await one.claim("hash-b") is not None  # two still holds b's connection: a hold
        async with attach_read_late(one, "b", monkeypatch):
            await eventually(lambda: old.superseded, 5, step=0.01)
            await two.detach("b", old, old.unsent)  # two lets go: the hold ends (u to one)
            await eventually(lambda: one._local["b"].held is False, 5, step=0.01)
        await eventually(lambda: one._local["b"].settled, 5)


async def test_frames_that_overtake_a_resync_reply_wait_behind_its_queue(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis took replica two for dead (its peer away, frames to it queued); two's heartbeat
    finds out and its resync takes the peer back with its queue, beside the subscriber: a frame
    the channel brings before that reply is read waits behind the queue."""
    async with replicas(redis_server, 2, resume_seconds=60) as (one, two):
        await joined(one, "a")
        bob = await joined(two, "b")
        script, queued, ran, read = two._script, trio.Event(), trio.Event(), trio.Event()

        async def late(name: str, *args: str | bytes | int) -> object:
            if name != "resync" or args[0] != "b":
                return await script(name, *args)
            await queued.wait()
            result = await script(name, *args)
            ran.set()
            await read.wait()
            return result

        monkeypatch.setattr(two, "_script", late)
        await eventually(lambda: one._healthy_since is not None, 5)  # one may judge others
        record = two._key("peer", "b")
        while redis_server.cli("HGET", record, "conn"):  # two's heartbeat may come in between
            seconds, _ = redis_server.cli("TIME").split()
            silent = (int(seconds) - 10) * 1000  # two's last heartbeat, as Redis will see it
            redis_server.cli("ZADD", two._key("nodes"), str(silent), two._node)
            await one.expired()  # one reaps two: b is away, within its grace
        assert await deliver(one, "R", "b", b"first") is Delivery.QUEUED
        queued.set()
        with trio.fail_after(10):
            await ran.wait()  # two's heartbeat noticed, and the resync ran in Redis
        assert await deliver(one, "R", "b", b"second") is Delivery.DELIVERED
        await eventually(lambda: bob.frames[-1:] == [b"second"] or two._local["b"].early, 5)
        read.set()
        await eventually(lambda: {b"first", b"second"} <= set(bob.frames), 5)
        assert bob.frames[-2:] == [b"first", b"second"]


@asynccontextmanager
async def channel_of(redis_server: RedisServer, node: str) -> AsyncIterator[Subscription]:
    """A replica's channel, read here as that replica would (for a made-up replica ``node``)."""
    endpoint = Endpoint("127.0.0.1", redis_server.port)
    async with subscribe(endpoint, f"tallow:ch:{node}", sharded=False, within=5) as subscription:
        yield subscription


def attached_elsewhere(redis_server: RedisServer, peer: str, node: str, room: str = "R") -> None:
    """Redis' record of ``peer``, attached on replica ``node`` and in ``room``."""
    redis_server.cli("HSET", f"tallow:peer:{peer}", "node", node, "conn", "c1", "room", room)
    redis_server.cli("HSET", f"tallow:room:{room}", peer, "{}")


async def messages(subscription: Subscription, count: int) -> list[bytes]:
    received: list[bytes] = []
    with trio.fail_after(5):
        while len(received) < count:
            received += await subscription.receive()
    return received


async def test_a_pipelines_frames_for_one_replica_go_as_one_message_to_replicas_that_read_it(
    redis_server: RedisServer,
) -> None:
    async with replicas(redis_server, 1) as (one,), channel_of(redis_server, "older") as older:
        await joined(one, "a")
        attached_elsewhere(redis_server, "x", "older")
        frames = [b"1", b"2", b"3"]
        # A replica of an earlier release (not in P:joins): one message per frame, as before.
        assert await deliver_all(one, "R", "x", frames) == [Delivery.DELIVERED] * 3
        assert await messages(older, 3) == [b"d x\n1", b"d x\n2", b"d x\n3"]
        # One that reads joined messages: one message for the pipeline, in order.
        redis_server.cli("SADD", "tallow:joins", "older")
        published = redis_server.calls("publish")
        assert await deliver_all(one, "R", "x", frames) == [Delivery.DELIVERED] * 3
        assert await messages(older, 1) == [b"j\nd x\n1\nd x\n2\nd x\n3"]
        assert redis_server.calls("publish") == published + 1
        # A frame with a newline in it goes alone, after what was gathered before it.
        assert (
            await deliver_all(one, "R", "x", [b"4", b"5\n5", b"6", b"7"])
            == [Delivery.DELIVERED] * 4
        )
        assert await messages(older, 3) == [b"d x\n4", b"d x\n5\n5", b"j\nd x\n6\nd x\n7"]


async def test_a_joined_message_nobody_hears_leaves_its_frames_queued_in_order(
    redis_server: RedisServer,
) -> None:
    async with replicas(redis_server, 1) as (one,):
        await joined(one, "a")
        attached_elsewhere(redis_server, "x", "gone")  # its replica is not subscribed
        redis_server.cli("SADD", "tallow:joins", "gone")
        assert await deliver_all(one, "R", "x", [b"1", b"2", b"3"]) == [Delivery.QUEUED] * 3
        assert redis_server.cli("LRANGE", "tallow:queue:x", "0", "-1").split() == ["1", "2", "3"]
        # Once something waits in its queue, later frames queue behind it.
        assert await deliver(one, "R", "x", b"4") is Delivery.QUEUED
        assert redis_server.cli("LRANGE", "tallow:queue:x", "0", "-1").split()[-1] == "4"


async def test_a_routed_frame_nobody_hears_is_answered_only_once_it_is_queued(
    redis_server: RedisServer,
) -> None:
    """A routed frame's sender hears of it only once its PUBLISH has run, and if nobody heard it
    (the replica is not subscribed: restarting, failing over), only once the script has put it
    in the peer's queue: the session waits until then, so its next frame cannot overtake it.
    The route is dropped; the next frame takes the script and queues behind."""
    async with replicas(redis_server, 1) as (one,):
        await joined(one, "a")
        attached_elsewhere(redis_server, "x", "back")
        redis_server.cli("ZADD", "tallow:nodes", "9999999999999", "back")  # (heartbeats keep it)
        redis_server.cli("SADD", "tallow:routable", "back")
        async with channel_of(redis_server, "back") as back:  # heard: a route to "back"
            assert await deliver(one, "R", "x", b"0") is Delivery.DELIVERED
            assert one._routes == {"x": "back"}
            assert await messages(back, 1) == [b"d x\n0"]
        published = redis_server.calls("publish")
        results = await deliver_all(one, "R", "x", [b"1", b"2", b"3"])
        assert results == [Delivery.QUEUED] * 3
        assert redis_server.calls("publish") > published  # the route was tried first
        assert one._routes == {}
        assert redis_server.cli("LRANGE", "tallow:queue:x", "0", "-1").split() == ["1", "2", "3"]
        async with channel_of(redis_server, "back") as back:  # the replica is back
            assert await deliver(one, "R", "x", b"4") is Delivery.QUEUED
            assert await messages(back, 1) == [b"f x\n"]  # told to flush, not handed "4"
        assert redis_server.cli("LRANGE", "tallow:queue:x", "0", "-1").split()[-1] == "4"


async def test_joined_frames_reach_a_replica_whole_and_in_order(redis_server: RedisServer) -> None:
    async with replicas(redis_server, 2) as (one, two):
        await joined(one, "a")
        b = await joined(two, "b")
        frames = [b"1", b"2\n2", b"3", b'{"x": "4"}', b"5"]
        assert await deliver_all(one, "R", "b", frames) == [Delivery.DELIVERED] * 5
        await eventually(lambda: len(b.frames) >= 5, 5)
        assert b.frames == frames


async def test_a_heartbeat_drops_replicas_that_are_gone_from_the_joined_list(
    redis_server: RedisServer,
) -> None:
    async with replicas(redis_server, 1):
        # As a replica of an earlier release leaves it after reaping a newer one.
        redis_server.cli("SADD", "tallow:joins", "reaped")
        await eventually(lambda: "reaped" not in redis_server.cli("SMEMBERS", "tallow:joins"), 5)
        listed = redis_server.cli("SMEMBERS", "tallow:joins").split()
        assert listed == redis_server.cli("ZRANGE", "tallow:nodes", "0", "-1").split()
