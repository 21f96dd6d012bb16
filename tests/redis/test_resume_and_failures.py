"""Resume on any replica, dead replicas, a Redis restart, and what Redis keeps afterwards."""

from __future__ import annotations

import contextlib
import json
import signal

import trio
from trio_websocket import ConnectionClosed

from harness.client import connect
from harness.processes import http_get
from harness.redis import eventually, signal_until_through


async def _pair(alice, bob, room: str) -> None:
    await alice.join(room), await bob.join(room)
    assert (await alice.recv())["type"] == "peer-joined"


async def test_resume_on_another_replica_keeps_identity_room_and_queued_signals(
    replicas, redis_server
) -> None:
    one, two = replicas(2, TALLOW_RESUME_SECONDS="10", TALLOW_RESUME_QUEUE="5")
    async with connect(one.ws_url) as alice:
        async with connect(two.ws_url) as bob:
            await _pair(alice, bob, "resume")
            bob_peer, token = bob.peer, bob.resume
        # Until his replica has seen the close, signals still go to his connection (and come
        # back as unsent, beyond the queue's bound): count only once he is away.
        record = f"{redis_server.key_prefix}:peer:{bob_peer}"
        await eventually(lambda: redis_server.cli("HGET", record, "conn") == "", 5)
        for number in range(5):
            await alice.send({"type": "signal", "to": bob_peer, "data": number})
        await alice.expect_error({"type": "signal", "to": bob_peer, "data": 5}, "queue-full")
        async with connect(one.ws_url, resume=token) as bob:
            assert bob.peer == bob_peer
            assert bob.welcome["resumed"] is True and bob.welcome["room"] == "RESUME"
            assert [(await bob.recv())["data"] for _ in range(5)] == list(range(5))
            await alice.send({"type": "signal", "to": bob_peer, "data": "live"})
            assert (await bob.recv())["data"] == "live"
            assert await alice.nothing_pending()  # no peer-left, no peer-joined
            async with connect(two.ws_url, resume=token) as again:  # a token works once
                assert again.peer != bob_peer and "resumed" not in again.welcome


async def test_resume_while_connected_supersedes_the_connection_on_the_other_replica(
    replicas,
) -> None:
    one, two = replicas(2)
    async with connect(one.ws_url) as alice, connect(two.ws_url) as bob:
        await _pair(alice, bob, "twice")
        async with connect(one.ws_url, resume=bob.resume) as bob_again:
            assert bob_again.peer == bob.peer
            assert await bob.closed_code() == 4000
            await alice.send({"type": "signal", "to": bob.peer, "data": "here"})
            assert (await bob_again.recv())["data"] == "here"
            assert await alice.nothing_pending()


async def test_slow_reader_cut_off_loses_nothing_and_keeps_order_across_replicas(
    replicas,
) -> None:
    env = {"TALLOW_SEND_QUEUE": "16", "TALLOW_RATE_LIMIT": "0", "TALLOW_RESUME_QUEUE": "1000"}
    env["TALLOW_RESUME_SECONDS"] = "30"
    one, two = replicas(2, **env)
    sent, received = 300, []
    async with connect(one.ws_url) as alice:
        async with connect(two.ws_url, message_size=1 << 20) as bob:
            await _pair(alice, bob, "slow")
            # Bob stops reading; Alice sends far more than his socket and send queue hold.
            for number in range(sent):
                await alice.send({"type": "signal", "to": bob.peer, "data": [number, "y" * 60000]})
            with contextlib.suppress(ConnectionClosed), trio.fail_after(20):
                while True:
                    received.append(json.loads(await bob.ws.get_message())["data"][0])
        assert len(received) < sent
        # He resumes on Alice's replica: the rest comes from Redis, in order, nothing lost.
        async with connect(one.ws_url, resume=bob.resume, message_size=1 << 20) as bob_again:
            assert bob_again.peer == bob.peer
            while received[-1] < sent - 1:
                received.append((await bob_again.recv())["data"][0])
            assert await bob_again.nothing_pending()
        assert received == sorted(set(received))  # in order, none twice
        # At most the one frame the session's writer held when it was cut may be missing: that
        # is the session's part (reported); everything that reached the broker arrives.
        assert len(set(range(sent)) - set(received)) <= 1
        assert await alice.nothing_pending()


async def test_killed_replica_peers_leave_within_grace_plus_ten_seconds(
    replicas, redis_server
) -> None:
    grace = 2.0
    one, two = replicas(2, TALLOW_RESUME_SECONDS=str(grace))
    async with connect(one.ws_url) as alice, connect(two.ws_url) as bob:
        await _pair(alice, bob, "crash")
        dead_node, nodes_key = f"test-{two.port}:", f"{redis_server.key_prefix}:nodes"
        assert any(
            n.startswith(dead_node)
            for n in redis_server.cli("ZRANGE", nodes_key, "0", "-1").split()
        )
        two.process.kill()
        started = trio.current_time()
        # Noticed dead: what it held for Bob may be lost (said once), then his grace runs out.
        interrupted = {"type": "peer-interrupted", "room": "CRASH", "peer": bob.peer}
        assert await alice.recv(grace + 10) == interrupted
        assert await alice.recv(grace + 10) == {
            "type": "peer-left",
            "room": "CRASH",
            "peer": bob.peer,
        }
        noticed = trio.current_time() - started
        assert grace <= noticed <= grace + 10
        nodes = redis_server.cli("ZRANGE", nodes_key, "0", "-1").split()
        assert not any(node.startswith(dead_node) for node in nodes)
        joins = redis_server.cli("SMEMBERS", f"{redis_server.key_prefix}:joins").split()
        assert not any(node.startswith(dead_node) for node in joins)
        left = [key for key in redis_server.scan_keys() if dead_node in key or bob.peer in key]
        assert left == []


async def test_peer_of_a_killed_replica_resumes_elsewhere_with_what_was_sent_meanwhile(
    replicas, redis_server
) -> None:
    one, two = replicas(2, TALLOW_RESUME_SECONDS="10")
    async with connect(one.ws_url) as alice:
        async with connect(two.ws_url) as bob:
            await _pair(alice, bob, "phoenix")
            two.process.kill()
            assert await bob.closed_code() is not None
        # Redis lets go of a closed subscriber at the end of its event loop's turn: a signal
        # in that same turn still counts it (lost with the replica, which peer-interrupted
        # tells). This one is sent once Redis knows the replica is gone.
        channel = f"{redis_server.key_prefix}:ch:test-{two.port}:*"
        await eventually(lambda: not redis_server.channels(channel), 5)
        await alice.send({"type": "signal", "to": bob.peer, "data": "while you were out"})
        assert await alice.nothing_pending()  # accepted: queued for bob, not an error
        async with connect(one.ws_url, resume=bob.resume) as back:
            assert back.peer == bob.peer and back.welcome["room"] == "PHOENIX"
            assert (await back.recv())["data"] == "while you were out"
            # Live signals follow at once: the dead replica, which hears nothing, holds no
            # hand-over (it used to hold it for 10 s, until the reaper let it lapse).
            started = trio.current_time()
            await alice.send({"type": "signal", "to": bob.peer, "data": "live"})
            assert (await back.recv(2))["data"] == "live"
            assert trio.current_time() - started < 2
            # His old replica died holding whatever it had for him: Alice hears so, once.
            notice = await alice.recv()
            assert notice == {"type": "peer-interrupted", "room": "PHOENIX", "peer": bob.peer}
        assert await alice.nothing_pending()


async def test_a_replica_cut_off_past_the_dead_timeout_announces_its_peers_again(
    replicas,
) -> None:
    one, two = replicas(2, TALLOW_RESUME_SECONDS="1")
    async with connect(one.ws_url) as alice, connect(two.ws_url) as bob:
        await alice.join("frozen"), await bob.join("frozen", "Bob", {"k": 1})
        assert (await alice.recv())["type"] == "peer-joined"
        two.process.send_signal(signal.SIGSTOP)  # silent: no heartbeat, its sockets stay open
        try:
            interrupted, left = await alice.recv(15), await alice.recv(15)
        finally:
            two.process.send_signal(signal.SIGCONT)
        assert interrupted == {"type": "peer-interrupted", "room": "FROZEN", "peer": bob.peer}
        assert left == {"type": "peer-left", "room": "FROZEN", "peer": bob.peer}
        # Back, it finds its peers reaped: the others hear them join again, as they were.
        assert await alice.recv(10) == {
            "type": "peer-joined",
            "room": "FROZEN",
            "peer": bob.peer,
            "name": "Bob",
            "meta": {"k": 1},
        }
        assert await signal_until_through(alice, bob, 10) < 10
        assert await signal_until_through(bob, alice, 10) < 10
        assert await bob.nothing_pending()


async def test_redis_restart_never_crashes_a_replica_and_signaling_recovers(
    replicas, redis_server
) -> None:
    one, two = replicas(2)
    async with connect(one.ws_url) as alice, connect(two.ws_url) as bob:
        await _pair(alice, bob, "outage")
        redis_server.kill()
        # During the outage the sender hears of it: never a silent loss.
        reply = await alice.request({"type": "signal", "to": bob.peer, "data": "lost?", "id": 1})
        assert reply["type"] == "error" and reply["re"] == 1
        assert reply["code"] == "unavailable", reply
        # Every replica shares this Redis: they stay ready (degraded) rather than all leave
        # the load balancer at once (docs/scaling.md).
        status, _, body = http_get(one.url + "/api/ready")
        broker = json.loads(body)["checks"]["broker"]
        assert status == 200 and broker["degraded"] is True, body
        assert one.metric("tallow_broker_up") == 0
        assert http_get(one.url + "/api/health")[0] == 200
        await trio.sleep(1)
        redis_server.start()  # empty: no persistence
        # Redis came back empty: each replica puts its own peers back, so try both ways.
        recovery = await signal_until_through(alice, bob, 20)
        recovery += await signal_until_through(bob, alice, 20 - recovery)
        assert recovery < 20
        async with connect(one.ws_url) as carol:  # the room exists again, with both
            peers = (await carol.join("outage"))["peers"]
            assert sorted(p["peer"] for p in peers) == sorted([alice.peer, bob.peer])
        status, _, body = http_get(two.url + "/api/ready")
        assert status == 200, body
    assert one.process.poll() is None and two.process.poll() is None


async def test_every_key_expires_or_goes_with_its_peer(replicas, redis_server) -> None:
    one, two = replicas(2, TALLOW_RESUME_SECONDS="1")
    prefix = redis_server.key_prefix
    baseline = redis_server.scan_keys(f"{prefix}:*")
    assert baseline == [
        f"{prefix}:epoch",
        f"{prefix}:joins",
        f"{prefix}:nodes",
        f"{prefix}:routable",
    ]
    async with trio.open_nursery() as nursery:

        async def busy(index: int) -> None:
            server = (one, two)[index % 2]
            async with connect(server.ws_url) as client:
                await client.join(f"room-{index % 3}", f"user {index}", {"i": index})
                await client.send({"type": "broadcast", "data": index})
                if index % 2:
                    await client.request({"type": "leave"})
                await trio.sleep(0.5)

        for index in range(12):
            nursery.start_soon(busy, index)
    keys_during = set(redis_server.scan_keys(f"{prefix}:*"))
    assert any(key.startswith((f"{prefix}:queue:", f"{prefix}:peer:")) for key in keys_during)
    for key in keys_during:
        ttl = int(redis_server.cli("PTTL", key))
        assert ttl != -1 or key.split(":")[1] in (
            "epoch",
            "nodes",
            "joins",
            "away",
            "holds",
            "peer",
            "resume",
            "room",
            "node",
            "routes",
            "routable",
        )
    await eventually(lambda: redis_server.scan_keys(f"{prefix}:*") == baseline, 10)


async def test_shutdown_while_redis_is_down_exits_cleanly(replicas, redis_server) -> None:
    (one,) = replicas(1)
    redis_server.kill()
    await trio.sleep(0.5)
    assert one.terminate() == 0
    assert "Traceback" not in one.log()
