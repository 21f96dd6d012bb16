"""Resume (PROTOCOL.md): same peer id and room after a drop, queued signals, single-use tokens."""

from __future__ import annotations

import json

import trio
from trio_websocket import ConnectionClosed

from harness.client import connect


async def test_resume_keeps_peer_and_room_and_delivers_what_was_queued(start_tallow) -> None:
    server = start_tallow(env={"TALLOW_RESUME_SECONDS": "30"})
    async with connect(server.ws_url) as alice:
        await alice.join("resume")
        async with connect(server.ws_url) as bob:
            await bob.join("resume")
            await alice.recv()  # peer-joined
            token, bob_peer = bob.resume, bob.peer
        # Bob's connection is gone (the server has noticed); Alice keeps signalling him.
        await server.wait_metric("tallow_connections_open", 1)
        for number in range(5):
            await alice.send({"type": "signal", "to": bob_peer, "data": number})
        await alice.send({"type": "broadcast", "data": "all"})
        async with connect(server.ws_url, resume=token) as bob_again:
            assert bob_again.peer == bob_peer
            assert bob_again.welcome["resumed"] is True
            assert bob_again.welcome["room"] == "RESUME"
            assert bob_again.resume != token
            got = [await bob_again.recv() for _ in range(6)]
            assert [m["data"] for m in got] == [0, 1, 2, 3, 4, "all"]
            # Still in the room, for both directions.
            await bob_again.send({"type": "signal", "to": alice.peer, "data": "back"})
            assert await alice.recv() == {"type": "signal", "from": bob_peer, "data": "back"}
        # The others never saw him leave or join again.
        assert await alice.nothing_pending(0.5)


async def test_resume_token_is_single_use(start_tallow) -> None:
    server = start_tallow()
    async with connect(server.ws_url) as first:
        token, peer = first.resume, first.peer
    async with connect(server.ws_url, resume=token) as second:
        assert second.peer == peer
        newer = second.resume
    async with connect(server.ws_url, resume=token) as replay:
        assert replay.peer != peer and "resumed" not in replay.welcome
    async with connect(server.ws_url, resume=newer) as third:
        assert third.peer == peer


async def test_unknown_or_expired_token_gives_a_fresh_identity(start_tallow) -> None:
    server = start_tallow(env={"TALLOW_RESUME_SECONDS": "0.5"})
    async with connect(server.ws_url, resume="not-a-token") as stranger:
        assert "resumed" not in stranger.welcome
    async with connect(server.ws_url) as watcher:
        await watcher.join("expire")
        async with connect(server.ws_url) as leaver:
            await leaver.join("expire")
            token, peer = leaver.resume, leaver.peer
        await watcher.recv()  # peer-joined
        assert await watcher.recv(timeout=5) == {
            "type": "peer-left",
            "room": "EXPIRE",
            "peer": peer,
        }
        async with connect(server.ws_url, resume=token) as late:
            assert late.peer != peer


async def test_resume_while_old_connection_still_open_supersedes_it(start_tallow) -> None:
    server = start_tallow()
    async with connect(server.ws_url) as old:
        await old.join("switch")
        async with connect(server.ws_url, resume=old.resume) as new:
            assert new.peer == old.peer and new.welcome["room"] == "SWITCH"
            assert await old.closed_code() == 4000
            assert await new.request({"type": "ping"}) == {"type": "pong"}


async def test_resume_queue_is_bounded_and_the_sender_is_told(start_tallow) -> None:
    server = start_tallow(env={"TALLOW_RESUME_QUEUE": "3"})
    async with connect(server.ws_url) as alice:
        await alice.join("q")
        async with connect(server.ws_url) as bob:
            await bob.join("q")
            await alice.recv()
            token, bob_peer = bob.resume, bob.peer
        await server.wait_metric("tallow_connections_open", 1)
        for number in range(3):
            await alice.send({"type": "signal", "to": bob_peer, "data": number})
        await alice.expect_error(
            {"type": "signal", "to": bob_peer, "data": 3, "id": "x"}, "queue-full"
        )
        async with connect(server.ws_url, resume=token) as bob_again:
            assert [(await bob_again.recv())["data"] for _ in range(3)] == [0, 1, 2]
            assert await bob_again.nothing_pending()


async def test_slow_reader_is_cut_off_and_loses_nothing_on_resume(start_tallow) -> None:
    server = start_tallow(
        env={"TALLOW_SEND_QUEUE": "16", "TALLOW_RATE_LIMIT": "0", "TALLOW_RESUME_QUEUE": "1000"}
    )
    async with connect(server.ws_url) as alice:
        await alice.join("slow")
        async with connect(server.ws_url, message_size=1 << 20) as bob:
            await bob.join("slow")
            await alice.recv()
            token, bob_peer = bob.resume, bob.peer
            # Bob stops reading; Alice sends far more than his socket and send queue hold.
            chunk = "y" * 60000
            sent = 0
            with trio.move_on_after(10):
                while True:
                    await alice.send({"type": "signal", "to": bob_peer, "data": [sent, chunk]})
                    sent += 1
                    if sent >= 400:
                        break
            received: list[int] = []
            try:
                with trio.fail_after(10):
                    while True:
                        received.append(json.loads(await bob.ws.get_message())["data"][0])
            except ConnectionClosed as closed:
                assert closed.reason.code == 1013
        assert sent == 400 and len(received) < sent
        async with connect(server.ws_url, resume=token, message_size=1 << 20) as bob_again:
            while len(received) < sent:
                received.append((await bob_again.recv())["data"][0])
            assert await bob_again.nothing_pending()
        assert received == list(range(sent))
