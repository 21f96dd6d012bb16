"""Every message row and error code of PROTOCOL.md against a live server on the embedded broker."""

from __future__ import annotations

import re

import pytest

from harness.client import connect


async def test_welcome_carries_identity_resume_heartbeat_and_limits(tallow_server) -> None:
    async with connect(tallow_server.ws_url) as alice, connect(tallow_server.ws_url) as bob:
        welcome = alice.welcome
        assert welcome["v"] == 1
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", welcome["peer"])
        assert welcome["peer"] != bob.peer
        assert len(welcome["resume"]) >= 32 and welcome["resume"] != bob.resume
        assert welcome["heartbeat"] == 20
        assert welcome["limits"] == {"message_bytes": 65536, "room_peers": 50}


async def test_create_gives_fresh_readable_codes(tallow_server) -> None:
    async with connect(tallow_server.ws_url) as alice:
        codes = set()
        for number in range(20):
            reply = await alice.request({"type": "create", "id": number})
            assert reply["type"] == "created" and reply["re"] == number
            assert re.fullmatch(
                r"[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}", reply["room"]
            )
            codes.add(reply["room"])
        assert len(codes) == 20


async def test_join_lists_present_peers_and_announces_newcomer(tallow_server) -> None:
    async with connect(tallow_server.ws_url) as alice, connect(tallow_server.ws_url) as bob:
        joined = await alice.join("Room-1", "Alice", {"device": "laptop"})
        assert joined == {"type": "joined", "room": "ROOM-1", "peer": alice.peer, "peers": []}
        joined = await bob.request({"type": "join", "room": "room-1", "name": "Bob", "id": "j"})
        assert joined["re"] == "j"
        assert joined["peers"] == [
            {"peer": alice.peer, "name": "Alice", "meta": {"device": "laptop"}}
        ]
        assert await alice.recv() == {
            "type": "peer-joined",
            "room": "ROOM-1",
            "peer": bob.peer,
            "name": "Bob",
            "meta": {},
        }


async def test_signal_reaches_only_its_target_with_server_known_sender(tallow_server) -> None:
    url = tallow_server.ws_url
    async with connect(url) as alice, connect(url) as bob, connect(url) as carol:
        for client in (alice, bob, carol):
            await client.join("signal-room")
        await alice.recv(), await alice.recv(), await bob.recv()  # peer-joined notices
        payload = {"sdp": "v=0...", "nested": [1, {"x": None}], "from": "spoofed"}
        await alice.send({"type": "signal", "to": bob.peer, "data": payload, "from": "evil"})
        assert await bob.recv() == {"type": "signal", "from": alice.peer, "data": payload}
        assert await carol.nothing_pending()
        assert await alice.nothing_pending()


async def test_signal_keeps_per_sender_order(tallow_server) -> None:
    async with connect(tallow_server.ws_url) as alice, connect(tallow_server.ws_url) as bob:
        await alice.join("order"), await bob.join("order")
        await alice.recv()
        for number in range(150):
            await alice.send({"type": "signal", "to": bob.peer, "data": number})
        assert [(await bob.recv())["data"] for _ in range(150)] == list(range(150))


async def test_broadcast_reaches_everyone_else(tallow_server) -> None:
    url = tallow_server.ws_url
    async with connect(url) as alice, connect(url) as bob, connect(url) as carol:
        for client in (alice, bob, carol):
            await client.join("bc")
        await alice.recv(), await alice.recv(), await bob.recv()
        await bob.send({"type": "broadcast", "data": {"hello": "all"}})
        expected = {"type": "broadcast", "from": bob.peer, "data": {"hello": "all"}}
        assert await alice.recv() == expected
        assert await carol.recv() == expected
        assert await bob.nothing_pending()


async def test_leave_replies_and_announces(tallow_server) -> None:
    async with connect(tallow_server.ws_url) as alice, connect(tallow_server.ws_url) as bob:
        await alice.join("bye"), await bob.join("bye")
        await alice.recv()
        assert await bob.request({"type": "leave", "id": 7}) == {
            "type": "left",
            "room": "BYE",
            "re": 7,
        }
        assert await alice.recv() == {"type": "peer-left", "room": "BYE", "peer": bob.peer}
        # After leaving, the peer can join another room, and the old one no longer holds it.
        await bob.join("elsewhere")
        await alice.expect_error({"type": "signal", "to": bob.peer, "data": 1}, "peer-not-found")


async def test_ping_pong_echoes_id(tallow_server) -> None:
    async with connect(tallow_server.ws_url) as alice:
        assert await alice.request({"type": "ping", "id": "p1"}) == {"type": "pong", "re": "p1"}
        assert await alice.request({"type": "ping"}) == {"type": "pong"}


async def test_closing_the_socket_is_a_leave_after_the_grace(start_tallow) -> None:
    server = start_tallow(env={"TALLOW_RESUME_SECONDS": "0.5"})
    async with connect(server.ws_url) as alice:
        await alice.join("gone")
        async with connect(server.ws_url) as bob:
            await bob.join("gone")
            await alice.recv()
        assert await alice.recv(timeout=5) == {
            "type": "peer-left",
            "room": "GONE",
            "peer": bob.peer,
        }


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("{not json", "bad-json"),
        ("[1, 2]", "bad-message"),
        ('"text"', "bad-message"),
        ("{}", "bad-message"),
        ('{"type": 5}', "bad-message"),
        ('{"type": "teleport"}', "unknown-type"),
        ('{"type": "join", "room": ""}', "bad-room"),
        ('{"type": "join", "room": "has space"}', "bad-room"),
        ('{"type": "join", "room": "' + "x" * 65 + '"}', "bad-room"),
        ('{"type": "join", "room": 12}', "bad-room"),
        ('{"type": "join", "room": "ok", "name": "' + "n" * 65 + '"}', "bad-message"),
        ('{"type": "join", "room": "ok", "name": 3}', "bad-message"),
        ('{"type": "join", "room": "ok", "meta": []}', "bad-message"),
        ('{"type": "join", "room": "ok", "meta": {"k": "' + "m" * 1100 + '"}}', "bad-message"),
        ('{"type": "signal", "to": "x", "data": 1}', "not-in-room"),
        ('{"type": "broadcast", "data": 1}', "not-in-room"),
        ('{"type": "leave"}', "not-in-room"),
        ('{"type": "ping", "id": ["list"]}', "bad-message"),
        ('{"type": "ping", "id": "' + "i" * 65 + '"}', "bad-message"),
    ],
)
async def test_bad_messages_get_stable_codes_and_the_connection_lives(
    tallow_server, message: str, code: str
) -> None:
    async with connect(tallow_server.ws_url) as alice:
        reply = await alice.expect_error(message, code)
        assert reply["message"]
        assert await alice.request({"type": "ping"}) == {"type": "pong"}


async def test_errors_echo_the_request_id(tallow_server) -> None:
    async with connect(tallow_server.ws_url) as alice:
        reply = await alice.expect_error({"type": "leave", "id": "abc"}, "not-in-room")
        assert reply["re"] == "abc"
        reply = await alice.expect_error({"type": "nope", "id": 42}, "unknown-type")
        assert reply["re"] == 42


async def test_room_errors(tallow_server) -> None:
    async with connect(tallow_server.ws_url) as alice, connect(tallow_server.ws_url) as bob:
        await alice.join("r1")
        await alice.expect_error({"type": "join", "room": "r2", "id": 1}, "already-in-room")
        await alice.expect_error({"type": "signal", "to": bob.peer, "data": 1}, "peer-not-found")
        await alice.expect_error({"type": "signal", "to": "nobody", "data": 1}, "peer-not-found")
        await alice.expect_error({"type": "signal", "to": 5, "data": 1}, "bad-message")
        await alice.expect_error({"type": "signal", "to": bob.peer}, "bad-message")
        await alice.expect_error({"type": "broadcast"}, "bad-message")


async def test_binary_frames_are_refused(tallow_server) -> None:
    async with connect(tallow_server.ws_url) as alice:
        await alice.expect_error(b"\x00\x01binary", "binary-unsupported")
        assert await alice.request({"type": "ping"}) == {"type": "pong"}
