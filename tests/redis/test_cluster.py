"""Redis Cluster: the fan-out tests again against a real 3-primary cluster, and a failover.

One cluster serves the whole module; each test's replicas take their own REDIS_PREFIX, so the
tests see only their own keys (each prefix is one hash tag, so one slot).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import pytest
import trio

from harness.client import connect
from harness.redis import RedisCluster, eventually, signal_until_through
from tests.redis.test_cross_replica import (
    test_per_sender_order_across_replicas,
    test_signal_broadcast_and_leave_cross_replicas,
)
from tests.redis.test_resume_and_failures import (
    test_every_key_expires_or_goes_with_its_peer,
    test_killed_replica_peers_leave_within_grace_plus_ten_seconds,
    test_peer_of_a_killed_replica_resumes_elsewhere_with_what_was_sent_meanwhile,
    test_resume_on_another_replica_keeps_identity_room_and_queued_signals,
)

__all__ = [  # the shared test bodies, collected here a second time against the cluster
    "test_every_key_expires_or_goes_with_its_peer",
    "test_killed_replica_peers_leave_within_grace_plus_ten_seconds",
    "test_peer_of_a_killed_replica_resumes_elsewhere_with_what_was_sent_meanwhile",
    "test_per_sender_order_across_replicas",
    "test_resume_on_another_replica_keeps_identity_room_and_queued_signals",
    "test_signal_broadcast_and_leave_cross_replicas",
]

_prefixes = itertools.count()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    started = RedisCluster(tmp_path_factory.mktemp("cluster")).start()
    yield started
    started.kill()


@pytest.fixture
def redis_server(cluster: RedisCluster) -> Iterator[RedisCluster]:
    """The module's cluster, under a prefix of this test's own (the ``replicas`` fixture's)."""
    yield attrs.evolve(cluster, prefix=f"t{next(_prefixes)}")
    cluster.heal()  # a primary killed: back to a replica for every primary


@asynccontextmanager
async def _pair(replicas: Any, room: str, **env: str) -> AsyncIterator[tuple[Any, ...]]:
    """Two replicas, Alice on one and Bob on the other, both in ``room``."""
    one, two = replicas(2, **env)
    async with connect(one.ws_url) as alice, connect(two.ws_url) as bob:
        await alice.join(room), await bob.join(room)
        assert (await alice.recv())["peer"] == bob.peer
        yield one, two, alice, bob


async def test_the_keys_of_a_deployment_share_one_slot_and_the_channels_are_sharded(
    replicas, redis_server: RedisCluster
) -> None:
    async with _pair(replicas, "slots"):
        keys = redis_server.scan_keys(f"{redis_server.key_prefix}:*")
        owner = redis_server.primary_for(keys[0])
        slots = {owner.cli("CLUSTER", "KEYSLOT", key) for key in keys}
        assert len(keys) > 4 and len(slots) == 1
        channels = owner.cli("PUBSUB", "SHARDCHANNELS", f"{redis_server.key_prefix}:ch:*")
        assert len(channels.split()) == 2  # one per replica, on the slot's primary
        assert owner.cli("PUBSUB", "CHANNELS", "*") == ""


async def test_a_manual_failover_moves_the_slot_and_signaling_follows(
    replicas, redis_server: RedisCluster
) -> None:
    async with _pair(replicas, "moved") as (_, _, alice, bob):
        epoch = f"{redis_server.key_prefix}:epoch"
        standby = redis_server.replica_of(redis_server.primary_for(epoch))
        standby.cli("CLUSTER", "FAILOVER")  # the old primary stays up, as a replica
        await eventually(lambda: redis_server.primary_for(epoch) is standby, 10)
        # The old primary redirects commands, and drops the sharded subscriptions it served.
        assert await signal_until_through(alice, bob, 10) < 10
        assert await signal_until_through(bob, alice, 10) < 10
        for number in range(20):
            await alice.send({"type": "signal", "to": bob.peer, "data": number})
        got: list[object] = []
        while len(got) < 20:
            if (data := (await bob.recv())["data"]) != "probe":  # late copies of the probes
                got.append(data)
        assert got == list(range(20))
        assert await bob.nothing_pending()  # none twice


@pytest.mark.parametrize("victim", ["another shard's primary", "the primary of Tallow's slot"])
async def test_failover_of_a_primary_under_traffic_loses_nothing_silently(
    replicas, redis_server: RedisCluster, victim: str
) -> None:
    signals, received, refused = 150, [], set()
    async with _pair(replicas, "failover", TALLOW_RESUME_SECONDS="30") as (one, two, alice, bob):
        epoch = f"{redis_server.key_prefix}:epoch"
        ours = redis_server.primary_for(epoch)
        others = [node for node in redis_server.primary_nodes() if node is not ours]
        primary = ours if victim.endswith("slot") else others[0]

        async def bob_receives() -> None:
            while True:
                received.append((await bob.recv(60))["data"])

        async def alice_hears_errors() -> None:
            while True:
                reply = await alice.recv(60)
                assert reply["type"] == "error" and reply["code"] == "unavailable", reply
                refused.add(reply["re"])

        async with trio.open_nursery() as nursery:
            nursery.start_soon(bob_receives)
            nursery.start_soon(alice_hears_errors)
            for number in range(signals):  # about 8 s of traffic, the primary killed early
                if number == 20:
                    primary.kill()
                await alice.send({"type": "signal", "to": bob.peer, "data": number, "id": number})
                await trio.sleep(0.05)
            # Every signal arrives or its sender heard it may not have: none lost silently.
            await eventually(lambda: set(received) | refused == set(range(signals)), 20)
            nursery.cancel_scope.cancel()
        assert received == sorted(set(received))  # in order, none twice
        assert received[-1] == signals - 1  # whatever the outage was, it passed
        if primary is ours:
            assert refused  # the senders were told of the outage
            assert redis_server.primary_for(epoch) is not primary  # its replica took over
    assert one.process.poll() is None and two.process.poll() is None
