"""High availability: replicas find the Redis primary through Sentinel and survive a failover."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.client import connect
from harness.redis import RedisServer, Sentinel, eventually, signal_until_through


@pytest.fixture
def sentinel_setup(tmp_path: Path):
    primary = RedisServer(tmp_path / "primary").start()
    standby = RedisServer(
        tmp_path / "standby", extra=["--replicaof", "127.0.0.1", str(primary.port)]
    ).start()
    sentinels = [
        Sentinel(tmp_path / f"sentinel-{index}", primary.port).start() for index in range(3)
    ]
    yield primary, standby, sentinels
    for process in (*sentinels, standby, primary):
        process.kill()


async def test_sentinel_failover_keeps_signaling_without_restarts(
    start_tallow, sentinel_setup
) -> None:
    primary, standby, sentinels = sentinel_setup
    hosts = ",".join(f"127.0.0.1:{sentinel.port}" for sentinel in sentinels)
    env = {"REDIS_URL": f"redis+sentinel://{hosts}/tallow", "TALLOW_RESUME_SECONDS": "30"}
    # Sentinels must know the standby before the primary goes, or there is nothing to promote.
    await eventually(lambda: "slave0" in primary.cli("INFO", "replication"), 10)
    await eventually(lambda: all(s.primary_port_now() == primary.port for s in sentinels), 10)
    one, two = start_tallow(env=env), start_tallow(env=env)
    async with connect(one.ws_url) as alice, connect(two.ws_url) as bob:
        await alice.join("ha"), await bob.join("ha")
        assert (await alice.recv())["peer"] == bob.peer
        primary.kill()
        # Both ways: a write the old primary had not replicated yet may be lost, and each
        # replica puts its peers back when it reconnects.
        recovery = await signal_until_through(alice, bob, 40)
        recovery += await signal_until_through(bob, alice, 40 - recovery)
        assert sentinels[0].primary_port_now() == standby.port
        assert recovery < 40
        await bob.send({"type": "broadcast", "data": "after failover"})
        assert (await alice.recv())["data"] == "after failover"
    assert one.process.poll() is None and two.process.poll() is None
