"""Peers on different replicas see each other exactly as on one replica (PROTOCOL.md over Redis)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from harness.client import Client, connect


@asynccontextmanager
async def two_in_a_room(first, second, room: str) -> AsyncIterator[tuple[Client, Client]]:
    """Alice on the first replica and Bob on the second, both in ``room`` (Alice has heard Bob
    join)."""
    async with connect(first.ws_url) as alice, connect(second.ws_url) as bob:
        await alice.join(room)
        await bob.join(room)
        assert (await alice.recv())["type"] == "peer-joined"
        yield alice, bob


async def test_join_lists_peers_of_every_replica_and_announces_across(replicas) -> None:
    one, two, three = replicas(3)
    async with connect(one.ws_url) as alice, connect(two.ws_url) as bob:
        assert (await alice.join("Cross", "Alice", {"os": "linux"}))["peers"] == []
        joined = await bob.join("cross", "Bob")
        assert joined["room"] == "CROSS"
        assert joined["peers"] == [{"peer": alice.peer, "name": "Alice", "meta": {"os": "linux"}}]
        assert await alice.recv() == {
            "type": "peer-joined",
            "room": "CROSS",
            "peer": bob.peer,
            "name": "Bob",
            "meta": {},
        }
        async with connect(three.ws_url) as carol:
            peers = (await carol.join("CROSS", "Carol"))["peers"]
            assert sorted(p["peer"] for p in peers) == sorted([alice.peer, bob.peer])
            assert (await alice.recv())["peer"] == carol.peer
            assert (await bob.recv())["peer"] == carol.peer


async def test_signal_broadcast_and_leave_cross_replicas(replicas) -> None:
    one, two, three = replicas(3)
    async with (
        connect(one.ws_url) as alice,
        connect(two.ws_url) as bob,
        connect(three.ws_url) as carol,
    ):
        await alice.join("talk"), await bob.join("talk"), await carol.join("talk")
        await alice.recv(), await alice.recv(), await bob.recv()  # peer-joined notices
        payload = {"sdp": "v=0\r\n", "n": [1, 2.5, None], "text": "grüße"}
        await alice.send({"type": "signal", "to": bob.peer, "data": payload})
        assert await bob.recv() == {"type": "signal", "from": alice.peer, "data": payload}
        assert await carol.nothing_pending()

        await bob.send({"type": "broadcast", "data": {"hello": "all"}})
        expected = {"type": "broadcast", "from": bob.peer, "data": {"hello": "all"}}
        assert await alice.recv() == expected
        assert await carol.recv() == expected
        assert await bob.nothing_pending()

        assert await carol.request({"type": "leave", "id": 7}) == {
            "type": "left",
            "room": "TALK",
            "re": 7,
        }
        left = {"type": "peer-left", "room": "TALK", "peer": carol.peer}
        assert await alice.recv() == left
        assert await bob.recv() == left
        await alice.expect_error({"type": "signal", "to": carol.peer, "data": 1}, "peer-not-found")


async def test_closing_is_a_leave_for_other_replicas_after_the_grace(replicas) -> None:
    one, two = replicas(2, TALLOW_RESUME_SECONDS="1")
    async with connect(one.ws_url) as alice:
        await alice.join("bye")
        async with connect(two.ws_url) as bob:
            await bob.join("bye")
            assert (await alice.recv())["type"] == "peer-joined"
        with trio.fail_after(6):
            assert await alice.recv(6) == {"type": "peer-left", "room": "BYE", "peer": bob.peer}


async def test_room_capacity_holds_across_replicas(replicas) -> None:
    servers = replicas(2, TALLOW_MAX_ROOM_PEERS="3")
    urls = [servers[i % 2].ws_url for i in range(8)]
    results: list[str] = []
    all_tried = trio.Event()

    async def try_join(url: str) -> None:
        async with connect(url) as client:
            await client.send({"type": "join", "room": "small"})
            while (reply := await client.recv())["type"] == "peer-joined":
                pass
            results.append(reply.get("code", reply["type"]))
            if len(results) == len(urls):
                all_tried.set()
            await all_tried.wait()  # stay in the room until everyone has tried

    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            for url in urls:
                nursery.start_soon(try_join, url)
    assert sorted(results) == ["joined"] * 3 + ["room-full"] * 5


async def test_per_sender_order_across_replicas(replicas) -> None:
    one, two = replicas(2)
    async with (
        connect(one.ws_url) as alice,
        connect(two.ws_url) as bob,
        connect(two.ws_url) as carol,
    ):
        for client in (alice, bob, carol):
            await client.join("order")
        await alice.recv(), await alice.recv(), await bob.recv()

        async def burst(sender, tag: str) -> None:
            for number in range(150):
                await sender.send({"type": "signal", "to": bob.peer, "data": [tag, number]})

        async with trio.open_nursery() as nursery:
            nursery.start_soon(burst, alice, "a")
            nursery.start_soon(burst, carol, "c")
        got = [(await bob.recv())["data"] for _ in range(300)]
        assert [n for tag, n in got if tag == "a"] == list(range(150))
        assert [n for tag, n in got if tag == "c"] == list(range(150))


async def test_a_signal_waiting_for_redis_keeps_the_replies_behind_it_in_order(replicas) -> None:
    """A signal that takes the script (to a peer its replica has no route to) pauses its session
    until Redis has answered it: what the client sent right behind it is handled after, so its
    error comes before the next reply."""
    one, two = replicas(2)
    async with two_in_a_room(one, two, "paused") as (alice, bob):
        for _ in range(20):
            for message in (
                {"type": "signal", "to": bob.peer, "data": 1},
                {"type": "signal", "to": "nobody", "data": 2, "id": 7},
                {"type": "ping", "id": 8},
                {"type": "signal", "to": bob.peer, "data": 3},
            ):
                await alice.send(message)
            replies = [await alice.recv(), await alice.recv()]
            order = [(reply["type"], reply["re"]) for reply in replies]
            assert order == [("error", 7), ("pong", 8)]
            assert replies[0]["code"] == "peer-not-found"
            assert [(await bob.recv())["data"] for _ in range(2)] == [1, 3]


async def test_a_signal_to_a_peer_that_left_after_a_route_is_refused_with_its_id(replicas) -> None:
    """After its first signal to bob, alice's replica sends the next ones straight to bob's
    replica (a route). Bob's leave ends the route: alice's next signal is refused with its id."""
    one, two = replicas(2)
    async with two_in_a_room(one, two, "routes") as (alice, bob):
        for number in range(3):
            await alice.send({"type": "signal", "to": bob.peer, "data": number})
        assert [(await bob.recv())["data"] for _ in range(3)] == [0, 1, 2]
        assert (await bob.request({"type": "leave"}))["type"] == "left"
        assert (await alice.recv())["type"] == "peer-left"
        signal = {"type": "signal", "to": bob.peer, "data": 3, "id": "late"}
        reply = await alice.expect_error(signal, "peer-not-found")
        assert reply["re"] == "late"
        assert await bob.nothing_pending()
